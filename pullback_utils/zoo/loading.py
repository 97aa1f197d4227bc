"""Loading diffusion models: a bundled zoo name, a local folder or a Hugging Face hub id.

:func:`load_model` resolves the name, checks the folder (the denoiser's class, the weights' integrity)
before any weights are read, and returns a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.

Pipeline folders of DDPM/DDIM and Stable Diffusion are read component by component (``unet``,
``scheduler``, ``vae``, ``text_encoder``, ``tokenizer``). Folders whose denoiser needs its pipeline's own
prompt encoders or label map (:data:`PIPELINE_FAMILIES`: SDXL's U-Net with ``text_time`` conditions,
``DiTTransformer2DModel``, ``SD3Transformer2DModel``, ``FluxTransformer2DModel``) are loaded whole with
``DiffusionPipeline.from_pretrained``, after the same checks; the pipeline is kept as
``DiffusionModel.pipeline`` for prompt encoding.
"""

from __future__ import annotations

import importlib
import numbers
import os
import re
from pathlib import Path
from typing import Any

import torch

from pullback_utils._io import read_json
from pullback_utils.diffusion.architectures import SUPPORTED_DENOISERS
from pullback_utils.diffusion.model_map import (
    MODEL_MAP_ENV,
    format_model_map,
    model_map,
    parse_model_map,
    resolve_model_reference,
)
from pullback_utils.diffusion.vae import config_get
from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = [
    "ModelNotFoundError",
    "check_model_reference",
    "SUPPORTED_UNETS",
    "SUPPORTED_DENOISERS",
    "PIPELINE_FAMILIES",
    "load_model",
    "MODEL_MAP_ENV",
    "model_map",
    "parse_model_map",
    "format_model_map",
    "resolve_model_reference",
]

# The pipeline components this package uses; others (safety checker, feature extractor) are skipped.
_COMPONENTS = ("unet", "scheduler", "vae", "text_encoder", "tokenizer")
#: The U-Net classes of component-wise loading (noise-, v- or x0-predicting diffusers U-Nets).
SUPPORTED_UNETS = ("UNet2DModel", "UNet2DConditionModel")
#: Denoisers loaded with their whole pipeline (their prompts need the pipeline's encoders).
PIPELINE_FAMILIES = ("DiTTransformer2DModel", "SD3Transformer2DModel", "FluxTransformer2DModel")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(OSError):
    """A model name, folder or hub id that cannot be resolved to a loadable model."""


# -------------------------------------------------------------------- loading
def _ladder_hint(name: str) -> str:
    """For a ``ladder-...`` name that is not in the catalogue: the valid rungs and seeds; for a seed
    replicate that is catalogued but not trained: how to train it."""
    from pullback_utils.zoo.registry import MODELS

    if "replica_of" in MODELS.get(name, {}):
        return (
            f"; {name!r} is a catalogued seed replicate of {MODELS[name]['replica_of']!r} that has not been "
            f"trained yet: `python -m pullback_utils.zoo train {name}`"
        )
    if not name.startswith("ladder"):
        return ""
    from pullback_utils.zoo.ladder import RUNGS
    from pullback_utils.zoo.registry import LADDER_SEEDS

    return f"; ladder models are ladder-<rung>-s<seed> with rung in {list(RUNGS)} and seed in {list(LADDER_SEEDS)}"


def check_model_reference(value: Any, name: str = "model") -> str:
    """``value`` if :func:`load_model` can resolve it without reading weights: a bundled model name, an
    existing folder, or a hub id ``owner/name`` (not fetched here); ``ModelNotFoundError`` naming
    ``name``, with the closest bundled names, otherwise. Cheap: no network, no weights."""
    from pullback_utils.zoo.registry import available_models, is_bundled, suggest

    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise ModelNotFoundError(
            f"{name} must be a bundled model name, a folder or a hub id 'owner/name', got {value!r}"
        )
    s = resolve_model_reference(os.fspath(value))
    if Path(s).expanduser().is_dir() or is_bundled(s) or (_HUB_ID.match(s) and not s.startswith((".", "/", "~"))):
        return s
    known = available_models() + available_models(ladder=True)
    raise ModelNotFoundError(
        f"{name}={s!r}{suggest(s, known)} is not a bundled model name, an existing folder or a hub "
        f"id 'owner/name'; bundled models: {available_models() or 'none installed'}{_ladder_hint(s)}"
    )


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    text_encoder: Any = None,
    sample_size: int | tuple[int, int] | None = None,
) -> DiffusionModel:
    """Load a diffusion model by bundled name, local folder or hub id.

    Args:
        name_or_path: a bundled model name (:func:`pullback_utils.zoo.registry.available_models`),
            a folder (diffusers ``save_pretrained`` pipeline folder, a bare ``UNet2DModel`` folder
            with ``scheduler_config.json``, or a zoo folder with ``zoo.json``), or a hub id
            ``owner/name`` (downloaded by diffusers, or taken from the local cache when offline). A name
            in the model map (``$PULLBACK_MODEL_MAP``, :func:`model_map`) is read from its folder and keeps
            its name (so per-model defaults keyed by the hub id still apply).
        device, dtype: where and in which floating type to put the networks.
        text_encoder: for zoo text models, an encoder object (``.encode(list[str]) -> (B, L, D)``)
            to use instead of the bundled MiniLM.
        sample_size: spatial size (int or (H, W)) of x_t for models whose resolution is free (U-Nets,
            DiT, SD3, FLUX): latents of that size; default the denoiser config's ``sample_size``
            (FLUX, which has none: 128, as ``FluxPipeline``).

    Raises:
        ModelNotFoundError: unknown name, missing folder, a hub id that cannot be fetched, or a
            folder whose denoiser is not one of :data:`SUPPORTED_UNETS` or :data:`PIPELINE_FAMILIES`.
        ~pullback_utils.diffusion.weights.CorruptWeightsError: a weight file is corrupt, truncated or does
            not match the folder's recorded ``WEIGHTS.sha256`` digests.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or a path, got {type(name_or_path).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    from pullback_utils.zoo.registry import available_models, is_bundled, model_dir, suggest

    if sample_size is not None:
        _check_sample_size(sample_size)  # before anything is read
    s = os.fspath(name_or_path)
    mapped = resolve_model_reference(s)  # $PULLBACK_MODEL_MAP: the folder, the name kept (per-model defaults)
    path = Path(mapped).expanduser()
    if path.is_dir():
        folder, name = path, s
    elif is_bundled(s):
        folder, name = model_dir(s), s
    elif isinstance(name_or_path, str) and _HUB_ID.match(s) and not s.startswith((".", "/", "~")):
        folder, name = _download(s), s
    else:
        known = available_models() + available_models(ladder=True)
        raise ModelNotFoundError(
            f"unknown model {s!r}{suggest(s, known)}: it is not a bundled model name, not an existing "
            f"folder and not a hub id of the form 'owner/name'. Bundled models: "
            f"{available_models() or 'none installed'}{_ladder_hint(s)}"
        )
    model = _load_folder(Path(folder), name=name, dtype=dtype, text_encoder=text_encoder, device=device)
    if sample_size is not None:
        size = _check_sample_size(sample_size)
        model = DiffusionModel(
            model.unet,
            model.scheduler,
            vae=model.vae,
            text_encoder=model.text_encoder,
            tokenizer=model.tokenizer,
            name=model.name,
            pipeline=model.pipeline,
            conditional=model.is_conditional,
            sample_shape=(model.sample_shape[0], *size),
        )
    if model.pipeline is not None:
        model.pipeline.to(device)
    model.unet.to(device)
    for m in (model.vae, model.text_encoder):
        if isinstance(m, torch.nn.Module):
            m.to(device)
    if model._uncond is not None:
        model._uncond = model._uncond.to(device)
    return model


def _check_sample_size(sample_size: Any) -> tuple[int, int]:
    """``sample_size`` (an int or a pair of ints >= 1, numpy ints included) as (H, W); ``ValueError`` naming it."""
    from pullback_utils._validate import check_int

    bad = f"sample_size must be an int >= 1 or a pair (H, W) of such ints, got {sample_size!r}"
    if isinstance(sample_size, (str, bytes, bool)) or not (
        isinstance(sample_size, numbers.Integral) or isinstance(sample_size, (tuple, list))
    ):
        raise ValueError(bad)
    items = [sample_size] * 2 if isinstance(sample_size, numbers.Integral) else list(sample_size)
    if len(items) != 2:
        raise ValueError(bad)
    try:
        h, w = (check_int(v, "sample_size", 1) for v in items)
    except ValueError:
        raise ValueError(bad) from None
    return h, w


def _download(hub_id: str) -> Path:
    """Local folder of hub pipeline ``hub_id`` (downloaded or cached); one clear error otherwise."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as dlogging

    from pullback_utils.zoo.registry import available_models

    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        return Path(DiffusionPipeline.download(hub_id))
    except Exception as e:  # noqa: BLE001 - every failure gets the same explanation
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if len(reason) > 300:
            reason = reason[:297] + "..."
        raise ModelNotFoundError(
            f"could not load {hub_id!r} from the Hugging Face Hub ({reason}).\n"
            "Either this machine is offline (or HF_HUB_OFFLINE=1) and the model is not in the local "
            "Hugging Face cache, or the id is wrong.\n"
            f"Bundled models that need no download: {available_models() or 'none installed'}.\n"
            "To use a hub model offline, fetch it on a machine with internet access:\n"
            f"    huggingface-cli download {hub_id} --local-dir <folder>\n"
            f"  (or DiffusionPipeline.from_pretrained({hub_id!r}).save_pretrained('<folder>')),\n"
            "copy the folder here and pass its path: load_model('<folder>')."
        ) from None
    finally:
        dlogging.set_verbosity(verbosity)


def _class(library: str, class_name: str) -> type:
    return getattr(importlib.import_module(library), class_name)


def _load_component(folder: Path, sub: str | None, library: str, class_name: str, dtype: torch.dtype):
    cls = _class(library, class_name)
    kwargs: dict[str, Any] = {"subfolder": sub} if sub else {}
    try:
        if sub == "scheduler" or class_name.endswith("Scheduler"):
            return cls.from_pretrained(folder, **kwargs)
        if "Tokenizer" in class_name:
            return cls.from_pretrained(folder / sub if sub else folder)
        if library == "transformers":
            module, info = cls.from_pretrained(folder / sub if sub else folder, dtype=dtype, output_loading_info=True)
        else:
            module, info = cls.from_pretrained(
                folder, torch_dtype=dtype, low_cpu_mem_usage=False, output_loading_info=True, **kwargs
            )
    except OSError as e:  # diffusers' "Unable to load weights ..." hides its cause in the chain
        cause = e.__cause__ or e.__context__
        why = f"{e}".strip() + (f" (cause: {type(cause).__name__}: {cause})" if cause is not None else "")
        raise ModelNotFoundError(f"cannot load {class_name} from {folder / sub if sub else folder}: {why}") from e
    _check_complete(module, info, folder / sub if sub else folder, class_name)
    return module


def _check_complete(module: Any, info: Any, where: Path, class_name: str) -> None:
    """``CorruptWeightsError`` naming the weight file(s) and the missing tensors when loading left a
    parameter or buffer uninitialised (diffusers and transformers only warn, and the values are
    whatever the memory held)."""
    from pullback_utils.diffusion.weights import CorruptWeightsError, weight_files

    missing = sorted(str(k) for k in (info or {}).get("missing_keys", []) or [])
    if not missing:
        return
    # keys a model may legitimately lack in a file (recomputed, tied) are not "missing" in loading_info;
    # anything listed there keeps uninitialised memory
    files = [str(p) for p in weight_files(where) if p.parent == where] or [str(where)]
    shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
    raise CorruptWeightsError(
        f"weights file {' / '.join(files)} lacks {len(missing)} tensor(s) that {class_name} needs: {shown}; "
        "loading it would leave them uninitialised. Restore the complete file from the original source, "
        "or save the model again"
    )


def _check_unet_class(config: Path, cls: Any) -> str:
    """The denoiser class named by ``config``; ``ModelNotFoundError`` unless it is supported."""
    if cls not in SUPPORTED_UNETS + PIPELINE_FAMILIES:
        raise ModelNotFoundError(
            f"{config}: the denoiser is a {cls!r}, but this package expects one of "
            f"{list(SUPPORTED_UNETS + PIPELINE_FAMILIES)} (a diffusers U-Net predicting noise, v or x_0, "
            "or a DiT, SD3 or FLUX transformer)"
        )
    return cls


def _load_unet_and_scheduler(folder: Path, dtype: torch.dtype, index: dict | None = None):
    """U-Net and scheduler from ``unet/`` + ``scheduler/`` or, old layout, the folder root."""
    index = index or {}
    spec = index.get("unet")
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and spec[1]:
        _check_unet_class(folder / "model_index.json", spec[1])
    if (folder / "unet" / "config.json").is_file():
        config = folder / "unet" / "config.json"
        cls = _check_unet_class(config, read_json(config, error=ModelNotFoundError).get("_class_name", "UNet2DModel"))
        unet = _load_component(folder, "unet", "diffusers", cls, dtype)
    elif (folder / "config.json").is_file():
        config = folder / "config.json"
        cls = _check_unet_class(config, read_json(config, error=ModelNotFoundError).get("_class_name", "UNet2DModel"))
        unet = _load_component(folder, None, "diffusers", cls, dtype)
    else:
        found = sorted(k for k in index if not k.startswith("_")) or sorted(
            p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        raise ModelNotFoundError(
            f"{folder} holds no denoiser: expected unet/config.json or transformer/config.json (pipeline folder) "
            f"or config.json (a bare U-Net folder) describing one of {list(SUPPORTED_UNETS + PIPELINE_FAMILIES)}; "
            f"found components {found}"
        )
    if (folder / "scheduler" / "scheduler_config.json").is_file():
        sched_path, sub = folder / "scheduler" / "scheduler_config.json", "scheduler"
    elif (folder / "scheduler_config.json").is_file():
        sched_path, sub = folder / "scheduler_config.json", None
    else:
        raise ModelNotFoundError(f"{folder} holds no scheduler (scheduler/scheduler_config.json)")
    spec = index.get("scheduler") or [
        "diffusers",
        read_json(sched_path, error=ModelNotFoundError).get("_class_name", "DDPMScheduler"),
    ]
    scheduler = _load_component(folder, sub, "diffusers", spec[1], dtype)
    return unet, scheduler


def _load_folder(
    folder: Path, *, name: str, dtype: torch.dtype, text_encoder: Any, device: Any = "cpu"
) -> DiffusionModel:
    from pullback_utils.diffusion.weights import check_weights

    check_weights(folder)  # readable safetensors; recorded digests (WEIGHTS.sha256) match
    if (folder / "zoo.json").is_file():
        return _load_zoo(folder, name=name, dtype=dtype, text_encoder=text_encoder, device=device)
    if (folder / "model_index.json").is_file():
        index = read_json(folder / "model_index.json", error=ModelNotFoundError)
        if _needs_pipeline(folder, index):
            return _load_pipeline(folder, index, name=name, dtype=dtype)
        unet, scheduler = _load_unet_and_scheduler(folder, dtype, index)
        parts: dict[str, Any] = {}
        for comp in ("vae", "text_encoder", "tokenizer"):
            spec = index.get(comp)
            if isinstance(spec, (list, tuple)) and len(spec) == 2 and spec[0] and spec[1]:
                parts[comp] = _load_component(folder, comp, spec[0], spec[1], dtype)
        if (parts.get("text_encoder") is None) != (parts.get("tokenizer") is None):
            raise ModelNotFoundError(f"{folder}: a text encoder needs a tokenizer and vice versa")
        return DiffusionModel(unet, scheduler, name=name, **parts)
    if (folder / "config.json").is_file():
        unet, scheduler = _load_unet_and_scheduler(folder, dtype)
        return DiffusionModel(unet, scheduler, name=name)
    raise ModelNotFoundError(
        f"folder {folder} is not a model folder: it holds no zoo.json, model_index.json or config.json"
    )


def _needs_pipeline(folder: Path, index: dict) -> bool:
    """Whether the folder's denoiser is a transformer of :data:`PIPELINE_FAMILIES` or an SDXL-style U-Net."""
    for comp in ("transformer", "unet"):
        spec = index.get(comp)
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2 and spec[1]):
            continue
        config = folder / comp / "config.json"
        if not config.is_file():
            raise ModelNotFoundError(f"{folder}: model_index.json lists a {comp} ({spec[1]}) but {config} is missing")
        cls = _check_unet_class(config, read_json(config, error=ModelNotFoundError).get("_class_name", spec[1]))
        if cls in PIPELINE_FAMILIES:
            return True
        return read_json(config, error=ModelNotFoundError).get("addition_embed_type") == "text_time"
    return False


def _load_pipeline(folder: Path, index: dict, *, name: str, dtype: torch.dtype) -> DiffusionModel:
    """A :class:`DiffusionModel` over the whole diffusers pipeline in ``folder`` (checked first)."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as dlogging

    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, low_cpu_mem_usage=False)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ModelNotFoundError(
            f"cannot load the {index.get('_class_name')} pipeline in {folder}: {type(e).__name__}: {e}"
        ) from e
    finally:
        dlogging.set_verbosity(verbosity)
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    return DiffusionModel(
        denoiser,
        pipe.scheduler,
        vae=getattr(pipe, "vae", None),
        text_encoder=getattr(pipe, "text_encoder", None),
        tokenizer=getattr(pipe, "tokenizer", None),
        name=name,
        pipeline=pipe,
    )


def _load_zoo(folder: Path, *, name: str, dtype: torch.dtype, text_encoder: Any, device: Any = "cpu") -> DiffusionModel:
    info = read_json(folder / "zoo.json", error=ModelNotFoundError)
    kind = info.get("kind")
    if kind not in ("pixel", "text"):
        raise ValueError(f"{folder / 'zoo.json'}: kind must be 'pixel' or 'text', got {kind!r}")
    unet, scheduler = _load_unet_and_scheduler(folder, dtype)
    name = info.get("name", name)
    if kind == "pixel":
        return DiffusionModel(unet, scheduler, name=name, conditional=False)
    if text_encoder is None:
        text_encoder = _zoo_text_encoder(info, device)
    hidden = getattr(text_encoder, "hidden_size", None)
    dim = config_get(unet.config, "cross_attention_dim", None)
    if hidden is not None and dim is not None and int(hidden) != int(dim):
        raise ValueError(
            f"text_encoder has hidden_size {hidden}, but the U-Net of {name!r} expects cross_attention_dim {dim}"
        )
    if not callable(getattr(text_encoder, "encode", None)):
        raise TypeError("text_encoder must have an .encode(list[str]) -> (B, L, D) method")
    return DiffusionModel(unet, scheduler, name=name, text_encoder=text_encoder, conditional=True)


def _zoo_text_encoder(info: dict, device: Any = "cpu") -> Any:
    encoder = info.get("text_encoder", "minilm")
    if encoder != "minilm":
        raise ValueError(f"unknown zoo text_encoder {encoder!r}; known: ['minilm']")
    try:
        from pullback_utils.zoo.text_encoder import MiniLMTextEncoder
    except ImportError as e:
        raise ModelNotFoundError(f"the zoo's MiniLM text encoder is unavailable ({e})") from None
    kwargs = {"max_length": int(info["max_length"])} if "max_length" in info else {}
    return MiniLMTextEncoder(device=str(device), **kwargs)
