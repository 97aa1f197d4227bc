"""A plan before the run: per chapter, the bases, Jacobian products, peak memory and time, before anything heavy.

``python -m pullback_utils.book plan --params FILE`` prints it; ``book run`` and ``book chapter`` make the
same memory check first and stop (a :class:`~pullback_utils.chapters.parameters.ParameterError`, one line
per chapter) when a chapter's model would not fit even with blocks of one vector.

Where each number comes from:

- **bases**: counted from the chapter's effective parameters by :data:`BASES` (the chapter's sweeps over
  samples × times, its controls and sensitivity rows; the tutorial's every basis, :func:`_tutorial`; other
  chapters' small extras are not counted).
- **products per basis**: block Krylov (the default solver) multiplies ``k + 2`` vectors by J and by Jᵀ per
  iteration; the iterations are ``max_iters`` at most and, measured, ~8 at tol 0.01 (the default book: 7820
  J·v over 100 bases of k = 8 in coarse_to_fine, 2026-12-02) and ~12 at tol 1e-3 (``benchmarks/scaling.py``:
  288-360 products for k = 10; 832-936 for k = 50, NOTES.md "Cost at real sizes"). Randomized subspace
  iteration: ``k + 10`` per iteration; power iteration: ``k`` per iteration for ``power_max_iters``.
- **FLOPs** of a forward pass, a J·v (forward mode: what ``auto`` picks at these sizes and what the CPU rates
  below were measured in) and a Jᵀu: :func:`pullback_utils.features.flops.basis_costs` on the meta device (the
  architecture's real config; nothing is allocated).
- **time on this machine**: FLOPs at the sustained rate measured on this CPU for the nearest measured
  architecture (:data:`MEASURED_CPU`: seconds per product from NOTES.md, turned into FLOP/s with the same
  counts), plus the DDIM trajectories (``n × ddim_steps`` forward passes).
- **time on a GPU**: the same FLOPs at ``gpu_tflops`` (default 400 TFLOP/s, the book's stated ASSUMPTION for
  a data-centre GPU in bf16, as in ``other_architectures``; no GPU has been measured in this project).
- **peak memory**: the weights (denoiser, and the VAE and text encoder of latent models) plus the recorded
  forward pass plus a block of products, with the block chosen from the free memory exactly as the engine
  does (:func:`pullback_utils.engine.jvp_memory.max_chunk`, forward mode: the smaller mode, the one ``auto``
  falls back to).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pullback_utils.chapters.parameters import ParameterError

__all__ = [
    "ChapterPlan",
    "BASES",
    "MEASURED_CPU",
    "DEFAULT_GPU_TFLOPS",
    "plan_chapters",
    "format_plan",
    "check_memory",
    "model_architecture",
]

#: the GPU rate of the plan unless told otherwise (TFLOP/s): an ASSUMPTION, as in ``other_architectures``
DEFAULT_GPU_TFLOPS = 400.0
#: seconds per forward pass / J·v / Jᵀu measured on this CPU (forward-mode J·v, 2 threads, quiet machine,
#: 2026-12-02; NOTES.md "Cost at real sizes", benchmarks/results-scaling.txt), keyed by architecture
MEASURED_CPU: dict[str, dict[str, Any]] = {
    "google/ddpm-cifar10-32": dict(config="cifar32", forward=0.06, jvp=0.088, vjp=0.060),
    "google/ddpm-ema-celebahq-256": dict(config="celebahq256", forward=1.04, jvp=2.80, vjp=1.92),
    "stabilityai/stable-diffusion-2-1-base": dict(config="sd21", forward=2.33, jvp=7.64, vjp=6.22),
}


def _n(v: dict, key: str) -> int:
    x = v.get(key)
    return len(x) if isinstance(x, (list, tuple)) else int(x or 0)


def _sensitivity_samples(v: dict) -> int:
    return min(int(v.get("sensitivity_samples", 0)), int(v["n_samples"]))


def _discrepancy_bases(v: dict) -> int:
    """Bases of timestep_discrepancy, as its notebook computes them: the study at ``times`` plus the anchor and
    ``anchor + lag`` for every lag, its random-weight control at ``control_times`` plus the anchor and one step
    later, the noise floor (the anchor and one step later again with another solver seed), the crossed (state
    x time-input) bases at the two ablation times (2 per sample, and again on the random-weight network when
    both are control times), and the sensitivity rows (layer and tol variants at the end times, the anchor and
    one step later)."""
    n, times = int(v["n_samples"]), [float(t) for t in v["times"]]
    anchor, lags = float(v["anchor_time"]), [float(g) for g in v["lags"]]  # KeyError: no such chapter parameter
    t_next = round(anchor + min(lags), 9)
    all_times = set(times) | {anchor} | {round(anchor + g, 9) for g in lags}
    ctrl = {float(t) for t in v.get("control_times", [])} | {anchor, t_next}
    ablation = {float(t) for t in v.get("ablation_times", [])}
    keep = {max(times), min(times), anchor, t_next}
    crossed = 2 * n * (1 + int(bool(ablation) and ablation <= ctrl))
    return n * (len(all_times) + len(ctrl) + 2) + crossed + 2 * len(keep) * _sensitivity_samples(v)


#: chapter -> (values -> [(model parameter, bases)]): what each chapter computes bases of
BASES: dict[str, Callable[[dict], list[tuple[str, int]]]] = {
    "local_basis_tutorial": lambda v: [("model", _tutorial(v)[0])],
    # the sensitivity rows: 2 variants (layer, tol) at the 2 end times on min(sensitivity_samples, n_samples)
    "coarse_to_fine": lambda v: [
        ("model", v["n_samples"] * (_n(v, "times") + _n(v, "control_times")) + 4 * _sensitivity_samples(v))
    ],
    "timestep_discrepancy": lambda v: [("model", _discrepancy_bases(v))],
    "dataset_complexity": lambda v: [
        (
            "ladder",
            _n(v, "rungs") * _n(v, "seeds") * v["n_samples"] * _n(v, "times")
            + _n(v, "rungs") * v.get("control_samples", 0) * _n(v, "control_times"),
        )
    ],
    # every prompt and the empty prompt, on n_states states (trained) and n_control (random weights);
    # prompts None: the chapter's twelve
    "prompt_influence": lambda v: [
        ("model", ((_n(v, "prompts") or 12) + 1) * (v["n_states"] + v.get("n_control", 0)) * _n(v, "times"))
    ],
    "editing": lambda v: [("model", v["n_samples"] * _n(v, "edit_times")), ("text_model", 2)],
    "ground_truth": lambda v: [(m, v["n_samples"] * _n(v, "times")) for m in v.get("models", [])],
    "other_architectures": lambda v: [],
    "your_own_model": lambda v: [],
    "scorecard": lambda v: [],
}


@dataclasses.dataclass
class ChapterPlan:
    """One chapter's line of the plan (one per model it computes bases of)."""

    chapter: str
    model: str
    bases: int
    products: int
    chunk: int | None
    peak_bytes: int | None
    cpu_seconds: float | None
    gpu_seconds: float | None
    fits: bool
    note: str = ""


def _unplanned(chapter: str, model: str, bases: int, products: int, note: str) -> ChapterPlan:
    """A plan line without memory or time figures (not planned; never stops a run), with why in ``note``."""
    return ChapterPlan(chapter, model, bases, products, None, None, None, None, True, note)


def model_architecture(ref: str) -> dict[str, Any] | None:
    """``{"cls", "config", "sample_shape", "text_tokens", "extra_params"}`` of a model reference (bundled name,
    folder, hub id, through the model map), read from config files only; None when no config is at hand
    (a hub id that is neither mapped, replicated nor a folder)."""
    from pullback_utils.zoo.loading import resolve_model_reference
    from pullback_utils.zoo.replicas import REPLICAS

    s = resolve_model_reference(ref)
    folder: Path | None = Path(s).expanduser() if Path(s).expanduser().is_dir() else None
    if folder is None:
        from pullback_utils.zoo.registry import is_bundled, model_dir

        try:
            folder = model_dir(s) if is_bundled(s) else None
        except KeyError:
            folder = None
    comps: dict[str, dict] = {}
    if folder is not None:
        for comp in ("unet", "vae", "text_encoder"):
            f = folder / comp / "config.json"
            if f.is_file():
                comps[comp] = json.loads(f.read_text())
        if "unet" not in comps and (folder / "config.json").is_file():
            comps["unet"] = json.loads((folder / "config.json").read_text())
    elif s in REPLICAS:
        comps = {k: dict(v) for k, v in REPLICAS[s].items()}
        comps["unet"]["_class_name"] = "UNet2DConditionModel" if "vae" in comps else "UNet2DModel"
    if "unet" not in comps:
        return None
    cfg = {k: v for k, v in comps["unet"].items() if not k.startswith("_")}
    cls = comps["unet"].get("_class_name", "UNet2DModel")
    size = cfg.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    tokens = 0
    if cls == "UNet2DConditionModel":
        tokens = int(comps.get("text_encoder", {}).get("max_position_embeddings", 0)) or 16
        if folder is not None and (folder / "zoo.json").is_file():
            tokens = int(json.loads((folder / "zoo.json").read_text()).get("max_length", 16))
    return dict(
        cls=cls,
        config=cfg,
        sample_shape=(int(cfg.get("in_channels", 3)), int(h), int(w)),
        text_tokens=tokens,
        extra_params=_extra_params(comps),
    )


def _extra_params(comps: dict[str, dict]) -> int:
    """Parameters of the VAE and text encoder (built on the meta device from their configs)."""
    import torch

    n = 0
    with torch.device("meta"):
        if "vae" in comps:
            import diffusers

            cfg = {k: v for k, v in comps["vae"].items() if not k.startswith("_")}
            n += sum(p.numel() for p in diffusers.AutoencoderKL.from_config(cfg).parameters())
        if "text_encoder" in comps:
            from transformers import CLIPTextConfig, CLIPTextModel

            keep = {
                k: v
                for k, v in comps["text_encoder"].items()
                if not k.startswith("_") and k not in ("architectures", "transformers_version", "torch_dtype", "dtype")
            }
            n += sum(p.numel() for p in CLIPTextModel(CLIPTextConfig(**keep)).parameters())
    return int(n)


_COSTS: dict[str, Any] = {}


def _costs(arch: dict[str, Any]):
    import torch

    from pullback_utils.features.flops import basis_costs

    key = json.dumps(
        [arch["cls"], arch["config"], arch["sample_shape"], arch["text_tokens"]], sort_keys=True, default=str
    )
    if key not in _COSTS:
        _COSTS[key] = basis_costs(
            arch["cls"],
            arch["config"],
            arch["sample_shape"],
            text_tokens=arch["text_tokens"],
            dtype=torch.float32,
            block=8,
            jvp_mode="forward",
        )
    return _COSTS[key]


def _cpu_rate(cost) -> tuple[float, str]:
    """(FLOP/s, which measurement) for a cost: the measured architecture nearest in forward FLOPs."""
    best: tuple[float, float, str] | None = None
    for forward_flops, rate, name in _reference_rates():
        distance = abs(math.log(max(cost.forward_flops, 1.0) / forward_flops))
        if best is None or distance < best[0]:
            best = (distance, rate, name)
    assert best is not None
    return best[1], best[2]


@functools.lru_cache(maxsize=1)
def _reference_rates() -> tuple[tuple[float, float, str], ...]:
    """(forward FLOPs, measured FLOP/s, name) of each architecture of :data:`MEASURED_CPU`, once per process."""
    out = []
    for name, m in MEASURED_CPU.items():
        arch = (
            model_architecture(name)
            if name != "google/ddpm-cifar10-32"
            else dict(
                cls="UNet2DModel",
                sample_shape=(3, 32, 32),
                text_tokens=0,
                extra_params=0,
                config=dict(
                    sample_size=32,
                    in_channels=3,
                    out_channels=3,
                    block_out_channels=(128, 256, 256, 256),
                    layers_per_block=2,
                    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                    downsample_padding=0,
                    flip_sin_to_cos=False,
                    freq_shift=1,
                    norm_eps=1e-6,
                ),
            )
        )
        assert arch is not None
        ref = _costs(arch)
        out.append((ref.forward_flops, (ref.jvp_flops + ref.vjp_flops) / (m["jvp"] + m["vjp"]), name))
    return tuple(out)


def _tutorial(v: dict) -> tuple[int, int]:
    """(bases, products) of the tutorial: its basis (which is also the comparison's ``krylov`` row: the same
    call, a cache hit), the selector's samples (its sample 0 is the same draw, sampled in a batch, so not
    bitwise the same state: a basis of its own), the reference (Krylov to ``reference_tol``; an exact
    reference's dim-x products are not counted), the other methods, and σ₁ at three times (k = 1)."""
    others = [m for m in v.get("methods", ["krylov"]) if m != "krylov"]
    extra = max(int(v.get("selector_samples", 0)), 0)
    bases = 1 + extra + 1 + len(others) + 3
    reference = 0 if v.get("exact_reference") else _products_per_basis({**v, "tol": v.get("reference_tol", 1e-5)})
    products = (
        (1 + extra) * _products_per_basis(v, "krylov")
        + reference
        + sum(_products_per_basis(v, m) for m in others)
        + 3 * _products_per_basis({**v, "k": 1}, "krylov")
    )
    return bases, products


def _products_per_basis(v: dict, method: str | None = None) -> int:
    k = int(v.get("k", 8))
    tol = float(v.get("tol", 0.01))
    iters = min(int(v.get("max_iters", 30)), 8 if tol >= 0.01 else 12)
    method = method or v.get("method", "krylov")
    if method == "power":
        return 2 * k * int(v.get("power_max_iters", 40))
    per = k + (10 if method == "randomized" else 2)
    return 2 * per * iters


def plan_chapters(
    chapters: list[tuple[str, dict[str, Any]]],
    *,
    available: int | None = None,
    gpu_tflops: float = DEFAULT_GPU_TFLOPS,
    timing: bool = True,
) -> list[ChapterPlan]:
    """The plan of ``chapters`` ([(name, effective values)]: the notebook's defaults updated with the
    overrides). ``available``: the free memory to plan for (default: this machine's, as the engine reads it).
    ``timing=False`` skips the times (the memory check at the start of a run)."""
    from pullback_utils.engine import jvp_memory

    if available is None:
        available = jvp_memory.available_bytes("cpu")
    out: list[ChapterPlan] = []
    for name, values in chapters:
        rule = BASES.get(name)
        if rule is None:
            out.append(_unplanned(name, "-", 0, 0, "no bases counted for this chapter"))
            continue
        try:
            counted = rule(values)
        except KeyError as missing:  # a notebook of that name without the book chapter's parameters
            out.append(_unplanned(name, "-", 0, 0, f"no bases counted (no parameter {missing} in this notebook)"))
            continue
        for param, bases in counted:
            ref = values.get(param, param) if param in values else param
            if param == "ladder":
                ref = "ladder-1-s0"
            if not isinstance(ref, str) or not bases:
                continue
            if name == "local_basis_tutorial":
                per = _tutorial(values)[1]
            else:
                per = bases and _products_per_basis(values)
                per = per * bases
            products = int(per)
            arch = model_architecture(ref)
            if arch is None:
                out.append(
                    _unplanned(name, ref, bases, products, "no local config (not planned): map it with --model-map")
                )
                continue
            try:
                cost = _costs(arch)
            except Exception as exc:  # noqa: BLE001 - the planner never stops a run by failing itself
                out.append(_unplanned(name, ref, bases, products, f"not planned ({type(exc).__name__}: {exc})"[:200]))
                continue
            weights = cost.param_bytes + 4 * arch["extra_params"]
            block = int(values.get("k", 8)) + 2
            room = None if available is None else max(0, available - weights)
            chunk = jvp_memory.max_chunk("forward", cost.saved_bytes, room, block)
            fits = chunk >= 1
            shown = max(chunk, 1)
            peak = int(weights + cost.saved_bytes * (1 + jvp_memory.BLOCK_FACTORS["forward"] * shown))
            if not timing:
                out.append(ChapterPlan(name, ref, bases, products, chunk if fits else 0, peak, None, None, fits))
                continue
            rate, source = _cpu_rate(cost)
            trajectories = int(values.get("n_samples", values.get("n_states", 1)) or 1) * int(
                values.get("ddim_steps", 0) or 0
            )
            flops = (products / 2) * (cost.jvp_flops + cost.vjp_flops) + (bases + trajectories) * cost.forward_flops
            out.append(
                ChapterPlan(
                    name,
                    ref,
                    bases,
                    products,
                    chunk if fits else 0,
                    peak,
                    flops / rate,
                    flops / (gpu_tflops * 1e12),
                    fits,
                    f"CPU rate of {source}",
                )
            )
    return out


def _seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 1:
        return "<1 s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def format_plan(plans: list[ChapterPlan], *, available: int | None, gpu_tflops: float = DEFAULT_GPU_TFLOPS) -> str:
    """The plan as a text table, with where its numbers come from."""
    from pullback_utils.engine.jvp_memory import format_bytes

    rows = [
        (
            "chapter",
            "model",
            "bases",
            "products",
            "chunk",
            "peak (models)",
            "this CPU",
            f"GPU @{gpu_tflops:.0f} TF/s",
            "fits",
        )
    ]
    for p in plans:
        rows.append(
            (
                p.chapter,
                p.model,
                str(p.bases),
                f"{p.products:,}",
                "-" if p.chunk is None else str(p.chunk),
                "?" if p.peak_bytes is None else format_bytes(p.peak_bytes),
                _seconds(p.cpu_seconds),
                _seconds(p.gpu_seconds),
                "yes" if p.fits else "NO",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    total_cpu = sum(p.cpu_seconds or 0 for p in plans)
    total_gpu = sum(p.gpu_seconds or 0 for p in plans)
    lines.append(
        f"total: {_seconds(total_cpu)} on this CPU, {_seconds(total_gpu)} on the GPU; free memory now "
        f"{'unknown' if available is None else format_bytes(available)}"
    )
    notes = sorted({p.note for p in plans if p.note and not p.note.startswith("CPU rate")})
    lines += [f"note: {n}" for n in notes]
    lines.append(
        "sources: bases and products from the chapters' parameters (book/plan.py); FLOPs from "
        "features/flops.py on the meta device; CPU seconds per product measured on this machine "
        "(NOTES.md 'Cost at real sizes', nearest architecture); GPU rate ASSUMED (--gpu-tflops); "
        "chunk = vectors per block of products chosen from the free memory (engine/jvp_memory.py); peak = weights "
        "+ one recorded forward pass + one block, beyond the interpreter and the chapter's own data; "
        "times count the products and the DDIM trajectories, not the chapter's other cells"
    )
    return "\n".join(lines)


def check_memory(plans: list[ChapterPlan], available: int | None) -> None:
    """:class:`ParameterError`, one line per chapter, when a chapter's model does not fit with blocks of one
    vector (so no chunk size helps)."""
    from pullback_utils.engine.jvp_memory import HEADROOM, MEMORY_LIMIT_ENV, format_bytes

    bad = [p for p in plans if not p.fits]
    if bad:
        raise ParameterError(
            "\n".join(
                f"{p.chapter}: {p.model} needs about {format_bytes(p.peak_bytes or 0)} with blocks of one vector "
                f"(weights, one recorded forward pass and one product), more than {HEADROOM:.0%} of the "
                f"{format_bytes(available or 0)} free here; no chunk size fixes it: run it on a machine or GPU with "
                f"more memory, free memory, or raise {MEMORY_LIMIT_ENV} if it is set too low"
                for p in bad
            )
        )
