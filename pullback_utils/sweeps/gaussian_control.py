"""The Gaussian control as a sweep: the optimal linear denoiser's bases (:mod:`pullback_utils.analysis.gaussian`)
laid out like a measured :class:`~pullback_utils.sweeps.bases.BasisSweep`, so that every claim statistic runs on
it through the same code as on the trained model (the matched null ``gaussian`` of the claims).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from pullback_utils._validate import check_int
from pullback_utils.analysis.gaussian import GaussianFit, _check_output, fit_dataset, gaussian_basis
from pullback_utils.sweeps.bases import BasisSweep
from pullback_utils.zoo.registry import model_dataset

__all__ = ["gaussian", "gaussian_sweep"]


def gaussian(
    model: Any,
    times: Any,
    k: int,
    n: int,
    *,
    dataset: str | None = None,
    output: str | None = None,
    n_images: int = 3000,
    seed: int = 0,
    rank: int | None = 512,
    cache_dir: Any = None,
) -> Any:
    """The Gaussian control of ``model`` as a :class:`~pullback_utils.sweeps.bases.BasisSweep` ``(n_t, n, k, ...)``.

    The Gaussian of the model's training data (``dataset``, default the zoo dataset of the model:
    :func:`pullback_utils.zoo.registry.model_dataset`) is fitted on ``n_images`` fresh draws
    (:func:`pullback_utils.analysis.gaussian.fit_dataset`, cached in ``cache_dir``); its denoiser's basis at every
    ``t`` of ``times`` is repeated for the ``n`` samples. ``output=None`` differentiates the output the
    model predicts (the h-analogue), ``"sample"`` the denoiser ``x0_hat`` (module doc of
    :mod:`pullback_utils.analysis.gaussian`). Returns ``(sweep, fit)``.
    """
    name = dataset or model_dataset(model)
    if name is None:
        raise ValueError(
            f"dataset must be given for model {getattr(model, 'name', model)!r}: the Gaussian control "
            f"needs the training data (a zoo dataset name)"
        )
    fit = fit_dataset(name, n_images=n_images, seed=seed, rank=rank, cache_dir=cache_dir)
    return gaussian_sweep(fit, model, times, k, n, output=output, seed=seed), fit


def gaussian_sweep(
    fit: GaussianFit, model: Any, times: Sequence[Any], k: int, n: int, *, output: str | None = None, seed: int = 0
) -> Any:
    """The Gaussian control as a :class:`~pullback_utils.sweeps.bases.BasisSweep` matched to a measured sweep.

    Args:
        fit: the data's Gaussian (:func:`fit_dataset`).
        model: anything with ``alpha_bar(t)`` (a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`)
            and, for ``output=None``, ``prediction_type``.
        times: the ``n_t`` times of the measured sweep (the package's convention).
        k: basis size; n: number of samples (the Gaussian's basis is the same for every sample: each
            row repeats it, so cross-sample statistics run through the same code as the model's).
        output: ``None`` = the model's own prediction (the h-analogue, module doc), or one of :data:`OUTPUTS`
            (``"sample"`` = the denoiser Jacobian).

    Returns:
        ``BasisSweep`` with ``v``, ``u`` ``(n_t, n, k, *shape)`` float32, ``s`` ``(n_t, n, k)``; ``info``
        rows of the per-time basis info.
    """
    if output is None:
        output = str(getattr(model, "prediction_type", ""))
    output = _check_output(output)
    n = check_int(n, "n", 1)
    bases = [gaussian_basis(fit, model.alpha_bar(t), k, output, seed=seed) for t in times]
    rep = lambda x: x.to(torch.float32).unsqueeze(0).expand(n, *x.shape).contiguous()  # noqa: E731
    return BasisSweep(
        v=torch.stack([rep(b.v) for b in bases]),
        u=torch.stack([rep(b.u) for b in bases]),
        s=torch.stack([b.s.unsqueeze(0).expand(n, -1) for b in bases]),
        times=list(times),
        info=[[dict(b.info) for _ in range(n)] for b in bases],
    )
