"""Moving x_t along a direction, and directions across samples.

- :func:`xspace_guidance`: the paper's x-space guidance, ``x <- x + gamma [eps(x + s v) - eps(x)]``;
- :func:`naive_traverse`: the baseline ``x_t + alpha v``;
- :func:`parallel_transport`: direction ``i`` of one sample's basis carried to another sample's;
- :func:`feature_jvp_fd` / :func:`tangent_alignment`: the h-space change ``J w`` of a direction
  (central finite difference of the feature map) and its cosine with a tangent vector ``u``.

Shapes: ``x_t`` ``(B, *sample_shape)`` or ``(*sample_shape)``; directions ``(*sample_shape)``, (1, ...) or
(D, ...); ``u`` ``(*h_shape)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from tqdm.auto import tqdm

from pullback_utils._validate import check_int, check_real
from pullback_utils.diffusion.ddim import Prompt, Time
from pullback_utils.diffusion.finite import refuse_non_finite, scale_causes
from pullback_utils.editing.checks import check_edit_time, check_index, check_prompt, direction_batch, state_batch

if TYPE_CHECKING:  # pragma: no cover
    from pullback_utils.engine.solvers import LocalBasis
    from pullback_utils.models.diffusion_model import DiffusionModel

__all__ = ["xspace_guidance", "naive_traverse", "parallel_transport", "feature_jvp_fd", "tangent_alignment"]


def _broadcast(x: torch.Tensor, d: torch.Tensor, what: str = "direction") -> tuple[torch.Tensor, torch.Tensor]:
    """x (Bx, ...) and d (Bd, ...) expanded to one batch size (one of them may be 1)."""
    if x.shape[0] != d.shape[0] and 1 not in (x.shape[0], d.shape[0]):
        raise ValueError(f"x_t (batch {x.shape[0]}) and {what} (batch {d.shape[0]}) do not broadcast")
    b = max(x.shape[0], d.shape[0])
    return x.expand(b, *x.shape[1:]), d.expand(b, *d.shape[1:])


@torch.no_grad()
def xspace_guidance(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    direction: torch.Tensor,
    *,
    gamma: float,
    n_steps: int,
    step_size: float = 1.0,
    prompt: Prompt = None,
    progress: bool = False,
) -> torch.Tensor:
    """x-space guidance: the iterates ``x^(0..N)`` of ``x <- x + gamma [eps(x + s v, t, c) - eps(x, t, c)]``.

    Args:
        model: a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`.
        x_t: ``(B, *sample_shape)`` or (1, ...) states at time ``t`` (broadcast against ``direction``).
        t: edit time in (0, T] (int level or fraction of T).
        direction: ``v``: ``(*sample_shape)``, (1, ...) or (B, ...), e.g. ``basis.v[i]`` or ``-basis.v[i]``;
            several directions guide copies of one ``x_t`` in one batch.
        gamma: step ``gamma`` (finite; 0 leaves x unchanged).
        n_steps: ``N`` >= 0.
        step_size: ``s`` > 0, the probe length along ``v`` (official 1 for unit ``v``).
        prompt: conditioning ``c`` of the noise predictions (conditional models; None = empty prompt).
        progress: tqdm bar over the N steps.

    Returns:
        ``(N + 1, B, *sample_shape)``: ``x^(0) = x_t`` (broadcast), ..., ``x^(N)``.
        With ``gamma == 0`` or ``N == 0`` no network is evaluated and every iterate equals ``x_t``.

    ``direction`` is used as given (the probe is ``s * v``; :func:`edit_image` normalises the
    directions it is given). A step that produces NaN or infinite values raises
    :class:`~pullback_utils.diffusion.finite.NonFiniteError` naming ``gamma`` and any input out of scale.
    """
    check_edit_time(model, t, "t")
    gamma = check_real(gamma, "gamma")
    n_steps = check_int(n_steps, "n_steps", 0)
    s = check_real(step_size, "step_size", positive=True)
    check_prompt(model, prompt, "prompt")
    d = direction_batch(model, direction)
    x, d = _broadcast(state_batch(model, x_t), d)
    x = x.clone()
    b = x.shape[0]
    iterates = [x]
    if gamma == 0.0 or n_steps == 0:
        return torch.stack(iterates * (n_steps + 1))
    cond = model.conditioning(prompt, batch=2 * b)
    causes = scale_causes(gamma=gamma, step_size=s, x_t=x, direction=d)
    for j in tqdm(range(n_steps), desc="x-space guidance", disable=not progress, leave=False):
        e = model.eps(torch.cat([x + s * d, x]), t, cond)
        e_probe, e_here = e.chunk(2)
        x = x + gamma * (e_probe - e_here)
        refuse_non_finite(
            x,
            f"xspace_guidance (step {j + 1} of {n_steps})",
            causes
            or [
                f"gamma={gamma:g} (each step moves x by gamma times a noise difference; "
                "the paper's edits use gamma of order 0.1..10)"
            ],
        )
        iterates.append(x)
    return torch.stack(iterates)


def naive_traverse(
    x_t: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``x_t + alpha v`` for every ``alpha`` in ``strengths``: ``(S, *broadcast(x_t, direction).shape)``."""
    if not isinstance(x_t, torch.Tensor) or not isinstance(direction, torch.Tensor):
        raise TypeError("x_t and direction must be torch.Tensors")
    a = torch.as_tensor(strengths, dtype=x_t.dtype, device=x_t.device).reshape(-1)
    if a.numel() == 0 or not torch.isfinite(a).all():
        raise ValueError(f"strengths must be a non-empty sequence of finite numbers, got {strengths!r}")
    try:
        x, d = torch.broadcast_tensors(x_t, direction.to(x_t))
    except RuntimeError:
        raise ValueError(f"x_t {tuple(x_t.shape)} and direction {tuple(direction.shape)} do not broadcast") from None
    return x.unsqueeze(0) + a.view(-1, *([1] * x.dim())) * d.unsqueeze(0)


#: ``LocalBasis.info`` fields that must agree for two bases to be of one feature map, and what each is
_SAME_MAP = {"denoiser": "model (denoiser weights)", "level": "time (level)", "layer": "layer"}


def _check_same_feature_map(a: "LocalBasis", b: "LocalBasis") -> None:
    ia, ib = dict(getattr(a, "info", None) or {}), dict(getattr(b, "info", None) or {})
    for field, what in _SAME_MAP.items():
        has_a, has_b = field in ia, field in ib
        if has_a and has_b and ia[field] != ib[field]:
            raise ValueError(
                f"parallel_transport needs two bases of one feature map, but their {what} differ: "
                f"basis_from.info[{field!r}] = {ia[field]!r}, basis_to.info[{field!r}] = {ib[field]!r}; "
                "compute both with the same model, t and layer"
            )
        if has_a != has_b:
            which = "basis_from" if has_a else "basis_to"
            raise ValueError(
                f"parallel_transport cannot check that the bases share a feature map: only {which} records "
                f"info[{field!r}] ({what}); compute both with model.local_basis (same model, t and layer)"
            )


def parallel_transport(
    basis_from: "LocalBasis",
    basis_to: "LocalBasis",
    index: int,
    *,
    return_coefficients: bool = False,
):
    """Direction on sample 1 corresponding to direction ``index`` of sample 0.

    Formula (the official code's form)::

        c  = U_1^T u_{0,index}        (coordinates of the h-space tangent vector in sample 1's basis)
        v' = V_1 c / ||V_1 c||        (the x-space direction with those coordinates)

    Assumption: both bases are of the same feature map (same model, layer and time, so their h
    vectors live in one space), and ``u_{0,index}`` lies (mostly) in span(U_1); what falls outside
    it is dropped. ``||c||`` (returned with ``return_coefficients``) measures how much of it was kept
    (1 = all). Note v' uses the coefficients unscaled, not ``V_1 Sigma_1^{-1} c`` (the
    pseudo-inverse): it is a direction, normalised afterwards. Transporting a basis onto itself
    gives ``c = e_index`` and ``v' = v_index``.

    Returns:
        ``(*x_shape)`` unit vector (the shape of ``basis_to.v[0]``); with ``return_coefficients``,
        ``(v', c)``.

    The assumption is checked on the bases' ``info`` (recorded by ``local_basis``): the denoiser
    (``info["denoiser"]``, a signature of its weights), the level and the layer must agree. A field
    that only one basis records is refused too (a basis from elsewhere: recompute both with
    ``model.local_basis``); bases that record none of them (built by ``jacobian_svd`` on a plain
    function) are taken as the caller's responsibility.

    Raises:
        ValueError: index not in 0..k-1 of ``basis_from``, h shapes that differ, bases of different
        denoisers, times or layers, or ``u_{0,index}`` orthogonal to span(U_1) (nothing to transport).
    """
    for name, b in (("basis_from", basis_from), ("basis_to", basis_to)):
        if not all(hasattr(b, a) for a in ("u", "v", "s")):
            raise TypeError(f"{name} must be a LocalBasis (with u, v, s), got {type(b).__name__}")
    _check_same_feature_map(basis_from, basis_to)
    k0 = int(basis_from.u.shape[0])
    index = check_index(index, k0)
    if tuple(basis_from.u.shape[1:]) != tuple(basis_to.u.shape[1:]):
        raise ValueError(
            f"the bases' h shapes differ: {tuple(basis_from.u.shape[1:])} vs {tuple(basis_to.u.shape[1:])} "
            "(transport needs the same feature map)"
        )
    u0 = basis_from.u[index].reshape(-1).double()
    U1 = basis_to.u.reshape(basis_to.u.shape[0], -1).double()
    V1 = basis_to.v.reshape(basis_to.v.shape[0], -1).double()
    c = U1 @ u0
    w = c @ V1
    norm = float(w.norm())
    if norm < 1e-5 * float(u0.norm()):
        raise ValueError(f"direction {index} of basis_from is orthogonal to span(U) of basis_to: nothing to transport")
    out = (w / norm).to(basis_to.v.dtype).reshape(basis_to.v.shape[1:])
    if return_coefficients:
        return out, c.to(basis_to.v.dtype)
    return out


@torch.no_grad()
def feature_jvp_fd(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    *,
    prompt: Prompt = None,
    layer: str | None = None,
    fd_step: float = 1e-2,
) -> torch.Tensor:
    """(B, dim_h) float64 h-space change ``J w ~ (f(x + e w) - f(x - e w)) / 2e`` of the feature map.

    ``x_t`` ``(1 | B, *sample_shape)`` and ``directions`` ``(1 | B, *sample_shape)`` broadcast over the batch;
    e = ``fd_step`` (accurate to O(e^2) for a smooth map, no autodiff); ``layer`` as in
    :func:`pullback_utils.feature_map` (``None``: the architecture's default, h-space for U-Nets).
    """
    level = check_edit_time(model, t, "t")
    d = direction_batch(model, directions, "directions")
    x, d = _broadcast(state_batch(model, x_t), d, "directions")
    e = check_real(fd_step, "fd_step", positive=True)
    fn = model.feature_map(level, prompt, layer)
    h = fn(torch.cat([x + e * d, x - e * d]))
    b = x.shape[0]
    return ((h[:b] - h[b:]) / (2 * e)).flatten(1).double()


def _cosine_rows(a: torch.Tensor, u: torch.Tensor, what: str) -> torch.Tensor:
    """(B,) cosine of each row of ``a`` (B, H) with ``u``: (H,)-sized (one for all) or (B, H)-sized."""
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    b, n = a.shape
    if u.numel() == n:
        uu = u.reshape(1, n).to(a)
    elif u.numel() == b * n and u.shape[0] == b:
        uu = u.reshape(b, n).to(a)
    else:
        raise ValueError(
            f"u has {u.numel()} entries, but h at layer {what!r} has {n} (one u, or one per row: {b} x {n})"
        )
    return (a * uu).sum(1) / (a.norm(dim=1) * uu.norm(dim=1)).clamp_min(1e-30)


@torch.no_grad()
def tangent_alignment(
    model: "DiffusionModel",
    x_t: torch.Tensor,
    t: Time,
    directions: torch.Tensor,
    u: torch.Tensor,
    *,
    prompt: Prompt = None,
    layer: str | None = None,
    fd_step: float = 1e-2,
) -> torch.Tensor:
    """(D,) cosine between the h-space change ``J w`` of each direction ``w`` at ``(x_t, t)`` and ``u``.

    ``J w`` is :func:`feature_jvp_fd` (central difference with step ``fd_step``). Use it to ask
    whether a direction does the same thing in h-space on another sample, e.g. a transported
    direction vs the raw vector of sample 0. ``u``: ``(*h_shape)``, or one per direction ``(D, *h_shape)``.
    """
    jw = feature_jvp_fd(model, x_t, t, directions, prompt=prompt, layer=layer, fd_step=fd_step)
    return _cosine_rows(jw, u, layer)
