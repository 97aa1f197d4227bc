"""Image editing along the local latent basis: x-space guidance, naive traversal, parallel transport.

The recipe of Park et al. (2023, Figure 2), one call with :func:`edit_image`:

1. bring the image (or a noise draw) to the edit time ``t``: DDIM-invert an image, or DDIM-generate
   from x_T;
2. compute the local latent basis at ``(x_t, t)`` (:meth:`DiffusionModel.local_basis`), optionally
   under a prompt (the Jacobian of ``f_t(. ; c_edit)``);
3. *x-space guidance* along ``±v_i`` (:func:`xspace_guidance`), ``N`` times::

       x <- x + gamma * [eps(x + s * v, t, c) - eps(x, t, c)]

4. finish with DDIM to ``t = 0`` (optionally stochastic, ``eta = 1``, below a chosen time, as the
   official unconditional setup does), and decode.

Why guidance and not ``x_t + alpha * v`` (:func:`naive_traverse`)? ``v`` is unit length in a space
where ``x_t`` has norm about ``sqrt(D)``, and the step ``eps(x + s v) - eps(x) ~ s J_eps v`` lets the
network's own response decide how to move ``x_t``; moving by ``alpha * v`` alone needs a large
``alpha`` for a visible change, which pushes ``x_t`` off the states the sampler expects.
:func:`matched_edits` compares both at a matched size of change.

Times follow :mod:`pullback_utils.diffusion.schedule` (int level ``0..T`` or a float fraction of ``T``); the
edit time must lie in ``(0, T]``. Image tensors are in the model range [-1, 1] (checked, with the
tolerance :data:`~pullback_utils.diffusion.images.SAMPLE_RANGE_TOL` = 0.5 that admits the package's own samples);
files, PIL images and uint8 / uint16 arrays are converted by :func:`pullback_utils.diffusion.images.load_image`,
and float numpy arrays are refused (their range, [0, 1] or [-1, 1], cannot be told from the values).

Conditioning
------------
``prompt`` is the generation prompt (inversion, sampling); ``basis_prompt`` the edit prompt, under
which the basis is computed (``None``: the same as ``prompt``). Unconditional models refuse both.
The two noise predictions of x-space guidance (step 3) are conditioned according to
``EditConfig.guidance_prompt``:

- ``"generation"`` (default; the book's behaviour so far): on the generation prompt ``prompt``. The
  guidance then asks how the *generating* model's prediction responds to ``v``.
- ``"edit"`` (the official code of Park et al.): on the edit prompt ``basis_prompt``, the same
  conditioning as the Jacobian whose singular vector ``v`` is, so the step
  ``eps(x + s v; c_edit) - eps(x; c_edit)`` follows the edit prompt's own response.

The two coincide when ``basis_prompt`` is ``None`` or equal to ``prompt``, and differ whenever the
prompts differ; finishing (step 4) always uses the generation prompt.

Settings
--------
:class:`EditConfig` (frozen, validated on construction): ``EditConfig.for_model(model)`` gives a
model's defaults (table :data:`EDIT_DEFAULTS`; :func:`edit_defaults` returns them as a dict), and
``cfg.replace(...)`` a changed copy. :func:`edit_image` and :func:`matched_edits` take ``config=``
and keyword overrides of its fields.

Where things are
----------------
- :mod:`~pullback_utils.editing.config`: :class:`EditConfig`, the defaults table;
- :mod:`~pullback_utils.editing.guidance`: guidance, naive traversal, parallel transport, h-space
  alignment of a direction;
- :mod:`~pullback_utils.editing.pipeline`: :func:`to_edit_time`, :func:`finish`, :func:`edit_image`;
- :mod:`~pullback_utils.editing.metrics`: change size and frequency, the model's denoising error,
  the matched naive step, and the model-independent measures of the procedural zoo models
  (:func:`renderer_residual`, :func:`renderer_iou`, :func:`h_alignment`);
- :mod:`~pullback_utils.editing.sweep`: many edits per call for the chapters (:func:`direction_sweep`,
  :func:`edit_along`, :func:`states_at_times`, :func:`held_out_images`);
- :mod:`~pullback_utils.editing.matched`: guided edits against naive steps of the same size of change
  (:func:`matched_edits`);
- :mod:`~pullback_utils.editing.efficacy`: the renderer-factor change of edits per unit of state change,
  over a grid of ``gamma`` and ``N`` (:func:`dose_response`);
- :mod:`~pullback_utils.editing.checks`: the input checks.
"""

from pullback_utils.editing.config import (
    EDIT_DEFAULTS,
    GUIDANCE_PROMPTS,
    EditConfig,
    edit_defaults,
    guidance_conditioning,
)
from pullback_utils.editing.efficacy import DoseResponse, dose_response, factor_change, factor_scale, has_renderer
from pullback_utils.editing.guidance import (
    feature_jvp_fd,
    naive_traverse,
    parallel_transport,
    tangent_alignment,
    xspace_guidance,
)
from pullback_utils.editing.matched import MatchedEdits, matched_edits
from pullback_utils.editing.metrics import (
    change_frequency,
    change_size,
    distance_from_data,
    h_alignment,
    match_naive,
    match_naive_batch,
    renderer_fit,
    renderer_iou,
    renderer_residual,
)
from pullback_utils.editing.pipeline import EditResult, edit_image, finish, to_edit_time
from pullback_utils.editing.sweep import Sweep, direction_sweep, edit_along, held_out_images, states_at_times

__all__ = [
    # settings: the frozen edit configuration and each model's defaults
    "EditConfig",
    "EDIT_DEFAULTS",
    "GUIDANCE_PROMPTS",
    "edit_defaults",
    "guidance_conditioning",
    # moving along a direction: x-space guidance, the naive step, parallel transport, h-space alignment
    "xspace_guidance",
    "naive_traverse",
    "parallel_transport",
    "feature_jvp_fd",
    "tangent_alignment",
    # the pipeline: to the edit time, the edit, the finish
    "edit_image",
    "EditResult",
    "to_edit_time",
    "finish",
    # measures of an edit (size, frequency, data distance, matched naive step, renderer fits)
    "change_size",
    "change_frequency",
    "distance_from_data",
    "match_naive",
    "match_naive_batch",
    "renderer_fit",
    "renderer_residual",
    "renderer_iou",
    "h_alignment",
    # many edits per call (chapters), and guided vs naive at a matched size of change
    "Sweep",
    "direction_sweep",
    "edit_along",
    "states_at_times",
    "held_out_images",
    "MatchedEdits",
    "matched_edits",
    # efficacy of an edit (renderer factors per unit of change) and its dose-response over gamma and N
    "DoseResponse",
    "dose_response",
    "factor_change",
    "factor_scale",
    "has_renderer",
]
