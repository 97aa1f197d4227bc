"""Prompts to a denoiser's conditioning, for every family, through each pipeline's own encoders.

:class:`~pullback_utils.models.diffusion_model.DiffusionModel` calls these functions; they read only its attributes
(``family``, ``pipeline``, ``text_encoder``, ``tokenizer``, …) and import nothing above them.

What a prompt becomes, per family:

- U-Nets of Stable Diffusion and the zoo: encoder hidden states (B, L, D), a tensor, from the CLIP
  text encoder (or the zoo encoder's ``.encode``); the empty prompt ``""`` is the unconditional branch.
- SDXL: :class:`Conditioning` with ``encoder_hidden_states`` and ``added_cond_kwargs`` =
  ``{"text_embeds": pooled, "time_ids": (H, W, 0, 0, H, W)}`` (image size, no crop) from
  ``StableDiffusionXLPipeline.encode_prompt``; the unconditional branch is zeros when the pipeline's
  ``force_zeros_for_empty_prompt`` is set (diffusers' default, as its pipeline does), else ``""``.
- SD3: ``encoder_hidden_states`` and ``pooled_projections`` from ``StableDiffusion3Pipeline.encode_prompt``
  (CLIP-L, CLIP-G and T5 when present); unconditional: ``""``.
- FLUX: ``encoder_hidden_states``, ``pooled_projections`` and ``txt_ids`` from ``FluxPipeline.encode_prompt``;
  unconditional: ``""``. ``img_ids`` and the embedded ``guidance`` are added per call by the model.
- DiT: ``class_labels``; a prompt is a class id, a list of ids, or label names of the pipeline's
  ``id2label``; unconditional: the null class ``num_classes`` (classifier-free guidance embedding).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from pullback_utils._validate import is_int, is_real
from pullback_utils.diffusion.finite import MAX_GUIDANCE_SCALE

__all__ = [
    "Conditioning",
    "expand_batch",
    "encode_prompt",
    "resolve",
    "short",
    "encode",
    "unconditional",
    "PromptTruncatedWarning",
]

_UNBATCHED = frozenset({"img_ids", "txt_ids"})


class Conditioning(Mapping):
    """A denoiser's conditioning keywords for a batch of samples: name -> tensor (batch first) or dict.

    Nested dicts (``added_cond_kwargs``) hold tensors too; ``img_ids`` / ``txt_ids`` have no batch
    dimension. ``batch`` is the common first dimension (1 = one conditioning for all samples).
    """

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self._kw = dict(kwargs)

    def __getitem__(self, key: str) -> Any:
        return self._kw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kw)

    def __len__(self) -> int:
        return len(self._kw)

    def __repr__(self) -> str:
        return f"Conditioning({ {k: short(v) for k, v in self._kw.items()} })"

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor, keyed ``name`` or ``name.sub`` (nested), for hashing and checks."""
        out: dict[str, torch.Tensor] = {}
        for k, v in self._kw.items():
            if isinstance(v, Mapping):
                out.update({f"{k}.{s}": t for s, t in v.items() if isinstance(t, torch.Tensor)})
            elif isinstance(v, torch.Tensor):
                out[k] = v
        return out

    @property
    def batch(self) -> int:
        sizes = {t.shape[0] for k, t in self.tensors().items() if k.split(".")[0] not in _UNBATCHED and t.ndim}
        return max(sizes) if sizes else 1

    def _map(self, fn) -> "Conditioning":
        def go(k: str, v: Any) -> Any:
            if isinstance(v, Mapping):
                return {s: go(k, t) for s, t in v.items()}
            return fn(k, v) if isinstance(v, torch.Tensor) else v

        return Conditioning({k: go(k, v) for k, v in self._kw.items()})

    def expand(self, batch: int) -> "Conditioning":
        """Batch-1 tensors expanded to ``batch``."""
        return self._map(
            lambda k, t: (
                t.expand(batch, *t.shape[1:])
                if k not in _UNBATCHED and t.ndim and t.shape[0] == 1 and batch != 1
                else t
            )
        )

    def to(self, device: Any, dtype: torch.dtype | None = None) -> "Conditioning":
        """Tensors on ``device``; floating ones cast to ``dtype`` (class labels keep theirs)."""
        return self._map(
            lambda k, t: t.to(device, dtype) if t.is_floating_point() and dtype is not None else t.to(device)
        )

    @staticmethod
    def cat(parts: list["Conditioning"]) -> "Conditioning":
        """Concatenation along the batch (equal-batch parts, same keys; unbatched ids from the first)."""
        first = parts[0]
        out: dict[str, Any] = {}
        for k, v in first.items():
            if isinstance(v, Mapping):
                out[k] = {
                    s: torch.cat([p[k][s] for p in parts]) if isinstance(t, torch.Tensor) else t for s, t in v.items()
                }
            elif isinstance(v, torch.Tensor) and k not in _UNBATCHED:
                out[k] = torch.cat([p[k] for p in parts])
            else:
                out[k] = v
        return Conditioning(out)

    def select(self, index: int) -> "Conditioning":
        """The conditioning of sample ``index`` (batch 1), or itself when its batch is 1."""
        if self.batch == 1:
            return self
        return self._map(lambda k, t: t[index : index + 1] if k not in _UNBATCHED and t.ndim else t)


def expand_batch(c: Any, batch: int) -> Any:
    """Conditioning ``c`` (a tensor, a :class:`Conditioning` or None) with batch 1 expanded to ``batch``."""
    if isinstance(c, Conditioning):
        return c.expand(batch)
    if isinstance(c, torch.Tensor) and c.shape[0] != batch:
        return c.expand(batch, *c.shape[1:])
    return c


def short(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    r = repr(obj)
    return r if len(r) < 80 else r[:77] + "..."


def _prompt_list(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise TypeError(
        f"prompt must be a string, a non-empty list of strings or encoder hidden states, got {short(prompt)}"
    )


# ------------------------------------------------------------------ encoders of each family
@torch.no_grad()
def encode(model: Any, prompts: list[str]) -> torch.Tensor | Conditioning:
    """Conditioning of text ``prompts`` (B,) for ``model``: a tensor (B, L, D) or a :class:`Conditioning`."""
    name = model.family.name if model.family is not None else "unet"
    pipe = getattr(model, "pipeline", None)
    if name == "unet" and not _is_sdxl(model):
        return _encode_clip(model, prompts)
    msl = {} if model.max_sequence_length is None else {"max_sequence_length": int(model.max_sequence_length)}
    dev = model.device
    if _is_sdxl(model):
        pe, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts, device=dev, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return Conditioning(
            {
                "encoder_hidden_states": pe,
                "added_cond_kwargs": {"text_embeds": pooled, "time_ids": _sdxl_time_ids(model).expand(len(prompts), 6)},
            }
        ).to(dev, model.dtype)
    if name == "sd3":
        pe, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=dev,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            **msl,
        )
        return Conditioning({"encoder_hidden_states": pe, "pooled_projections": pooled}).to(dev, model.dtype)
    if name == "flux":
        pe, pooled, txt_ids = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=dev, num_images_per_prompt=1, **msl
        )
        return Conditioning({"encoder_hidden_states": pe, "pooled_projections": pooled, "txt_ids": txt_ids}).to(
            dev, model.dtype
        )
    if name == "dit":
        return Conditioning({"class_labels": _dit_labels(model, prompts)})
    raise ValueError(f"model {model.name!r} ({name}) has no prompt encoder")


def _encode_clip(model: Any, prompts: list[str]) -> torch.Tensor:
    te = model.text_encoder
    if model.tokenizer is None:  # an encoder object such as the zoo's MiniLM
        out = te.encode(prompts)
    else:
        tok = model.tokenizer
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        kwargs = {}
        if getattr(te.config, "use_attention_mask", False):
            kwargs["attention_mask"] = ids.attention_mask.to(te.device)
        out = te(ids.input_ids.to(te.device), **kwargs)[0]
    return out.to(model.device, model.dtype)


def _is_sdxl(model: Any) -> bool:
    cfg = getattr(model.unet, "config", None)
    return (
        model.family is not None
        and model.family.name == "unet"
        and cfg is not None
        and (cfg.get("addition_embed_type") == "text_time")
    )


def _sdxl_time_ids(model: Any) -> torch.Tensor:
    """(1, 6) SDXL micro-conditioning: original size, crop top-left (0, 0), target size = the image size."""
    _, h, w = model.image_shape
    return torch.tensor([[h, w, 0, 0, h, w]], dtype=model.dtype, device=model.device)


@torch.no_grad()
def unconditional(model: Any) -> torch.Tensor | Conditioning:
    """(1, ...) conditioning of the unconditional branch (see the module doc for each family)."""
    if model.family is not None and model.family.name == "dit":
        n = dit_null_class(model)
        if n is None:
            raise ValueError(
                f"model {model.name!r} has no null class (trained without label dropout), so no "
                "unconditional branch; use guidance_scale=1"
            )
        return Conditioning({"class_labels": torch.tensor([n], device=model.device)})
    if _is_sdxl(model) and model.pipeline.config.get("force_zeros_for_empty_prompt", True):
        c = encode(model, [""])
        return Conditioning(
            {
                "encoder_hidden_states": torch.zeros_like(c["encoder_hidden_states"]),
                "added_cond_kwargs": {
                    "text_embeds": torch.zeros_like(c["added_cond_kwargs"]["text_embeds"]),
                    "time_ids": c["added_cond_kwargs"]["time_ids"],
                },
            }
        )
    return encode(model, [""])


def dit_null_class(model: Any) -> int | None:
    """The null class id of a DiT (its label table's extra row), or None without one."""
    n = int(model.unet.config.num_embeds_ada_norm)
    table = model.unet.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    return n if table.num_embeddings > n else None


def _dit_labels(model: Any, prompt: Any) -> torch.Tensor:
    """(B,) class ids of a DiT prompt: an int, a list of ints, a (B,) integer tensor, or label names."""
    n = int(model.unet.config.num_embeds_ada_norm)
    if isinstance(prompt, torch.Tensor) and not prompt.is_floating_point() and prompt.ndim <= 1:
        ids = prompt.reshape(-1).tolist()
    elif is_int(prompt):
        ids = [int(prompt)]
    elif isinstance(prompt, (list, tuple)) and prompt and all(is_int(p) for p in prompt):
        ids = [int(p) for p in prompt]
    elif isinstance(prompt, (str, list, tuple)):
        names = _prompt_list(prompt)
        labels = getattr(model.pipeline, "labels", None) or {}
        missing = [p for p in names if p not in labels]
        if missing:
            known = f"known labels include {sorted(labels)[:8]}" if labels else "this pipeline has no id2label"
            raise ValueError(f"class label(s) {missing} not found ({known}); pass class ids 0..{n - 1} instead")
        ids = [int(labels[p]) for p in names]
    else:
        raise TypeError(f"a DiT prompt must be a class id, a list of ids or label names, got {short(prompt)}")
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"class ids {bad} are outside 0..{n - 1} (the model has {n} classes)")
    return torch.tensor(ids, dtype=torch.long, device=model.device)


# ------------------------------------------------------------------ what DiffusionModel's prompt methods do
def encode_prompt(model: Any, prompt: Any) -> torch.Tensor | Conditioning | None:
    """:meth:`DiffusionModel.encode_prompt <pullback_utils.models.diffusion_model.DiffusionModel.encode_prompt>`."""
    if not model.is_conditional:
        if prompt is None:
            return None
        raise ValueError(
            f"prompt={prompt!r} was given, but model {model.name!r} is unconditional "
            "(it takes no text); pass prompt=None"
        )
    if prompt is None:
        return model.unconditional_embedding()
    if model.family is not None and model.family.name == "dit":
        return Conditioning({"class_labels": _dit_labels(model, prompt)})
    prompts = _prompt_list(prompt)
    if model.text_encoder is None:
        raise ValueError(
            f"model {model.name!r} has no text encoder, so it cannot encode prompt={prompt!r}; "
            "pass encoder hidden states (a tensor) instead"
        )
    # keyed by the encoders' identity too: swapping model.text_encoder (or tokenizer, pipeline, the
    # SD3/FLUX token count) must not return the old encoder's embedding
    owners = (model.text_encoder, model.tokenizer, getattr(model, "pipeline", None))
    key = (tuple(id(o) for o in owners), model.max_sequence_length, tuple(prompts))
    memo = model._prompt_memo
    hit = memo.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], owners)):  # text encoders are deterministic (eval mode)
        if len(memo) >= 64:
            memo.pop(next(iter(memo)))
        _warn_truncated(model, prompts)
        c = encode(model, prompts)
        _check_finite_conditioning(c, f"the encoding of prompt {short(prompt)}")
        memo[key] = hit = (owners, c)  # the owners are kept, so their ids cannot be reused while memoised
    return hit[1].to(model.device, model.dtype)


def _check_finite_conditioning(c: Any, what: str) -> None:
    """``ValueError`` naming ``what`` when a floating tensor of conditioning ``c`` holds NaN or inf."""
    tensors = c.tensors() if isinstance(c, Conditioning) else {"": c} if isinstance(c, torch.Tensor) else {}
    bad = [k or "values" for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(
            f"{what} contains NaN or infinite values ({', '.join(bad)}); the denoiser would return NaN images"
        )


def _token_limit(model: Any) -> tuple[Any, int] | None:
    """(tokenizer, max tokens) of a text U-Net's encoder (CLIP tokenizer or the zoo's MiniLM), else None."""
    if model.tokenizer is not None:
        tok = model.tokenizer
        limit = getattr(tok, "model_max_length", None)
    else:
        tok = getattr(model.text_encoder, "tokenizer", None)
        limit = getattr(model.text_encoder, "max_length", None)
    if tok is None or not isinstance(limit, numbers.Integral) or not 0 < int(limit) < 10**6:
        return None
    return tok, int(limit)


def _warn_truncated(model: Any, prompts: list[str]) -> None:
    """Warn, naming the token limit and the words dropped, when a prompt of a text U-Net is longer than
    its encoder reads (CLIP: 77 tokens; the zoo's MiniLM: 16). Prompts that differ only after the limit
    get the same conditioning. SDXL / SD3 / FLUX pipelines warn themselves (diffusers)."""
    if (model.family is not None and model.family.name != "unet") or _is_sdxl(model):
        return
    found = _token_limit(model)
    if found is None:
        return
    tok, limit = found
    for p in prompts:
        ids = tok(p, truncation=False, add_special_tokens=True)["input_ids"]
        if len(ids) > limit:
            kept = tok.decode(ids[:limit], skip_special_tokens=True)
            import warnings

            warnings.warn(
                f"prompt {p!r} has {len(ids)} tokens, but the text encoder of model {model.name!r} reads "
                f"{limit} (special tokens included): everything after {kept!r} is dropped, so prompts that "
                "differ only there get the same conditioning",
                PromptTruncatedWarning,
                stacklevel=4,
            )


class PromptTruncatedWarning(UserWarning):
    """A prompt is longer than the text encoder's token limit; the rest is ignored."""


def _text_keywords(model: Any) -> tuple[str, ...]:
    """The conditioning keywords a prompt of ``model`` turns into."""
    if model.family is None or (model.family.name == "unet" and not _is_sdxl(model)):
        return ("encoder_hidden_states",)
    return {
        "dit": ("class_labels",),
        "sd3": ("encoder_hidden_states", "pooled_projections"),
        "flux": ("encoder_hidden_states", "pooled_projections", "txt_ids"),
    }.get(model.family.name, ("encoder_hidden_states", "added_cond_kwargs"))


def resolve(
    model: Any, prompt: Any, *, batch: int = 1, guidance_scale: float = 1.0
) -> torch.Tensor | Conditioning | None:
    """:meth:`DiffusionModel.conditioning <pullback_utils.models.diffusion_model.DiffusionModel.conditioning>`."""
    if not is_real(guidance_scale) or not math.isfinite(float(guidance_scale)):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
    if abs(float(guidance_scale)) > MAX_GUIDANCE_SCALE:
        raise ValueError(
            f"guidance_scale={float(guidance_scale):g} is outside [-{MAX_GUIDANCE_SCALE:g}, {MAX_GUIDANCE_SCALE:g}]: "
            "classifier-free guidance is used at 1..20, and scales this large overflow the guided noise "
            "(NaN images); pass a value in that range"
        )
    if float(guidance_scale) != 1.0 and not model.has_unconditional_branch:
        why = "is unconditional" if not model.is_conditional else "has no unconditional branch (no text encoder)"
        raise ValueError(
            f"guidance_scale={guidance_scale} needs classifier-free guidance, but model "
            f"{model.name!r} {why}; use guidance_scale=1.0"
        )
    if not model.is_conditional:
        if prompt is not None:
            raise ValueError(
                f"prompt={short(prompt)} was given, but model {model.name!r} is unconditional "
                "(it takes no text); pass prompt=None"
            )
        return None
    if isinstance(prompt, dict):
        prompt = Conditioning(prompt)
    if isinstance(prompt, Conditioning):
        missing = [k for k in _text_keywords(model) if k not in prompt and k != "txt_ids"]
        if missing:
            raise ValueError(
                f"conditioning for model {model.name!r} lacks {missing} (it needs {list(_text_keywords(model))})"
            )
        c: Any = prompt.to(model.device, model.dtype)
        _check_finite_conditioning(c, "prompt")
    elif isinstance(prompt, torch.Tensor) and prompt.is_floating_point():
        if _text_keywords(model) != ("encoder_hidden_states",):
            raise ValueError(
                f"model {model.name!r} is conditioned on {list(_text_keywords(model))}: pass a prompt "
                "string or a Conditioning with these keywords, not one tensor"
            )
        c = prompt if prompt.dim() == 3 else prompt.unsqueeze(0) if prompt.dim() == 2 else None
        dim = (
            model.unet.config.get("cross_attention_dim")
            if hasattr(getattr(model.unet, "config", None), "get")
            else None
        )
        dim = int(dim) if isinstance(dim, numbers.Integral) else None
        if c is None or c.shape[0] not in (1, batch) or (dim is not None and c.shape[-1] != dim):
            raise ValueError(
                f"prompt as encoder hidden states must have shape (L, {dim}) or (1 | {batch}, L, "
                f"{dim}), got {tuple(prompt.shape)}"
            )
        _check_finite_conditioning(prompt, "prompt (encoder hidden states)")
        return c.to(model.device, model.dtype)
    else:
        c = model.encode_prompt(prompt)
    b = c.batch if isinstance(c, Conditioning) else c.shape[0]
    if b not in (1, batch):
        raise ValueError(f"got {b} prompts for a batch of {batch}; give 1 or {batch}")
    return c
