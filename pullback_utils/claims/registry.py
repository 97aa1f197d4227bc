"""The claims registry: every claim the book tests, in one place (the only copy of each wording).

A :class:`ClaimSpec` holds: the claim in words, the chapter that measures it, the unit of inference, the
test, the claimed direction and the null (for a claim with a smallest effect of interest, that value:
the claim must beat it), the statistic in words, the baselines and controls a record must carry, and
the primary model. The paper's primary claims form the family over which Holm's correction runs;
support records (another side of the Jacobian, an ablation, the same statistic on another model) carry
Holm within their parent claim, and the book's extensions are reported beside them. An extension is
never "reproduced" or "not reproduced": it has its own outcome words.

Revision log (what was fixed when, and which results had been seen; from ``git log -p`` of this file and
of ``statistics.py``). The registry was *not* fixed before any result was seen:

- 2026-11-27: the first scorecard (``4e34524``) read claim records that the chapters wrote with their own
  wordings and interval-based verdicts; its numbers were seen before this registry existed.
- 2026-12-01 (``4a4bf1b``): the registry written, with every claim's unit, test, direction, baselines and
  controls, after those first results; the statistics (``statistics.py``) written the same day.
- 2026-12-01 (``ca48dc6``): dataset complexity gained its random-weight control (it had none) when its
  chapter was first run on the ladder.
- 2026-12-02 (``e243506``, ``108d6d5``): the ground-truth extensions' statistics redefined (the renderer's
  tangent span pushed to x_t through the inversion instead of the clean span; a local-PCA and a
  denoiser-Jacobian comparison) after the first ground-truth results.
- 2026-12-02 (``3ff4301``): ``editing_alignment`` changed from "guided cosine minus the naive step's" to
  "guided cosine against 0" with the editing chapter's first run; ``editing``'s statistic gained the
  models-without-a-renderer clause.
- 2026-12-02 (``a20cb1c``): a random-weight control that shows the effect is named in the record's
  sentence (after the prompt chapter's control, -0.64, was seen beside the trained -0.56).
- 2026-12-07 (issue 24, after the built book's numbers): coarse to fine reworded to "a shift towards
  higher frequencies" (the basis is still 83 % low-band at t = 0.1); timestep discrepancy re-based from
  "adjacent-time distance minus the solver noise floor" (2.63 vs 0.003 rad: it could fail only if J did
  not depend on t) to one sample's distance at the sampler's own step relative to another sample at the
  same time, with a smallest effect of interest of 0.25 fixed here before that statistic was run; early
  similarity from "distance at the smallest minus at the largest t" (+0.60 rad, not monotone, sign
  flipping with k) to the trend over all times of the sigma-weighted overlap; ``editing_alignment`` tested
  against the naive step's value (1) instead of 0; a control that shows the effect gets its own verdict,
  "not attributable to learning"; support records carry Holm within their claim.
- 2026-12-07 (issue 24, item 1, before these statistics were first run): ``editing_efficacy`` (log ratio of
  the guided and the naive step's renderer-factor change per unit of state change, with the equivalence
  margin log 1.25 written here first) and ``editing_dose_response`` (Spearman rho of the factor change
  against gamma * N) added; ``discrepancy_time_input`` / ``discrepancy_state`` re-based from "minus the
  noise floor" to the same-time cross-sample scale with the SESOI 0.25 (their old values, 1-2 rad over a
  0.003 floor, had been seen); ``early_similarity_vs_gaussian`` moved to the overlap trend and
  ``dataset_complexity_vs_gaussian`` to the rung as the unit, like their parents (their old values seen).
  The ``editing`` margin 0.005 stays as set after its 2026-12-02 result: not pre-registered.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClaimSpec", "CLAIMS", "PRIMARY", "get", "outcome_words"]


#: The verdict of a claim whose random-weight control shows the effect too (never "reproduced").
NOT_LEARNED = "not attributable to learning"


@dataclass(frozen=True)
class ClaimSpec:
    """One claim or support record.

    Attributes:
        id: the record name in the chapter's ``metrics.json`` (``"<id>@<model>"`` for per-model copies).
        title: a few words for tables.
        wording: the claim in words.
        chapter: the notebook whose ``metrics.json`` holds the record.
        kind: ``"paper"`` (a primary claim of the paper), ``"support"`` or ``"extension"``.
        unit: the independent unit of inference.
        test: the test (a function of :mod:`pullback_utils.analysis.inference`).
        direction: ``"greater"`` or ``"less"``: the side of ``null`` the claim predicts.
        statistic: the statistic in words, units included.
        baselines, controls: names a record must carry (matched nulls; ``random_weights`` = the same
            statistic on a random-weight network of the same architecture).
        primary_model: the model the claim is decided on (fixed in advance).
        parent: for support records, the claim they support.
        null: the no-effect value; for a claim with a smallest effect of interest (``sesoi``), that value.
        sesoi: the smallest effect of interest, fixed here before the statistic is run (``None``: any effect
            on the claimed side counts); when set, ``null`` equals it and the claim must exceed it.
        outcome: extensions only: words for the significant outcomes on the claimed side and the other.
        margin: the smallest effect of interest of an equivalence test (TOST) reported beside the claim's
            own test, in the statistic's units (``None``: none).
    """

    id: str
    title: str
    wording: str
    chapter: str
    kind: str
    unit: str
    test: str
    direction: str
    statistic: str
    baselines: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    primary_model: str = "disks"
    parent: str | None = None
    null: float = 0.0
    outcome: tuple[str, str] | None = None
    min_units: int = 20
    sesoi: float | None = None
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.sesoi is not None and self.null != self.sesoi:
            raise ValueError(f"claim {self.id!r}: null must equal the smallest effect of interest {self.sesoi}")


_C = ClaimSpec
CLAIMS: tuple[ClaimSpec, ...] = (
    # ------------------------------------------------------------------ the paper's claims
    _C(
        "coarse_to_fine",
        "Coarse to fine",
        "From early (t near T) to late generation the local basis shifts towards higher frequencies: its "
        "low-frequency share falls as t -> 0.",
        "coarse_to_fine",
        "paper",
        "sample",
        "sign-flip",
        "greater",
        "low-frequency energy share of the top-k local basis at the largest t minus at the smallest t, per sample",
        baselines=("white_noise_low_share",),
        controls=("random_weights",),
    ),
    _C(
        "early_similarity",
        "Early cross-sample similarity",
        "At early timesteps different samples share similar tangent spaces; they drift apart as t -> 0.",
        "timestep_discrepancy",
        "paper",
        "sample",
        "jackknife t over units",
        "greater",
        "per sample pair, Spearman rho between -t and the dissimilarity 1 - O of the two samples' h-side bases over "
        "all times (O: sigma-weighted projection overlap, robust to a flat spectrum); mean over pairs",
        baselines=("spectrum_matched",),
        controls=("random_weights",),
    ),
    _C(
        "timestep_discrepancy",
        "Timestep discrepancy",
        "The tangent spaces of one sample at different timesteps differ, already between adjacent timesteps.",
        "timestep_discrepancy",
        "paper",
        "sample",
        "sign-flip",
        "greater",
        "per sample, the geodesic distance between its tangent spaces span(u) at t and t + one sampler step, "
        "relative to its mean distance to the other samples at the same times (0: no change with t; 1: as far "
        "as another sample); the claim must exceed the smallest effect of interest 0.25",
        baselines=("chance_level", "spectrum_matched"),
        controls=("random_weights",),
        null=0.25,
        sesoi=0.25,
    ),
    _C(
        "dataset_complexity",
        "Dataset complexity",
        "The simpler the training data, the more consistent the tangent spaces across samples.",
        "dataset_complexity",
        "paper",
        "rung",
        "nested permutation trend",
        "greater",
        "Spearman rho between a ladder rung's number of free factors and the mean over its training seeds of the "
        "models' mean cross-sample distance of span(u) over t (the rung, i.e. the dataset, is the unit; its seeds "
        "share its data distribution and are averaged; all rung labellings enumerated)",
        baselines=("spectrum_matched",),
        controls=("random_weights",),
        primary_model="ladder",
        min_units=5,
    ),
    _C(
        "similar_prompts",
        "Similar prompts, similar tangents",
        "Similar prompts yield similar tangent spaces.",
        "prompt_influence",
        "paper",
        "prompt-state",
        "partial Mantel given the encoder",
        "less",
        "partial Mantel correlation (Spearman of residuals) between the caption-attribute similarity of two "
        "prompts and the geodesic distance of their tangent spaces span(u), both with the text encoder's "
        "similarity of the prompts partialled out, averaged over prompt-states; prompts vary only in attributes "
        "the model obeys (colour, position, background)",
        baselines=("shuffled_prompts",),
        controls=("random_weights",),
        primary_model="shapes-text",
        min_units=10,
    ),
    _C(
        "text_influence_fades",
        "Text influence fades",
        "The model depends less on the text at later timesteps: bases under different prompts get closer as t -> 0.",
        "prompt_influence",
        "paper",
        "prompt-state",
        "sign-flip",
        "less",
        "mean geodesic distance between the tangent spaces span(u) under different prompts at the smallest t "
        "minus at the largest t (rad), per prompt-state",
        baselines=("spectrum_matched",),
        controls=("random_weights",),
        primary_model="shapes-text",
        min_units=10,
    ),
    _C(
        "editing",
        "Guidance beats naive traversal",
        "x-space guidance along the local basis edits an image while keeping it on the data: better than moving "
        "x_t naively by a step of the same size.",
        "editing",
        "paper",
        "sample",
        "sign-flip",
        "greater",
        "renderer-fit RMS residual of the naively edited image minus that of the guided edit at the same size of "
        "change, per sample (both signs, averaged over the edit times; models without a renderer: their own "
        "denoising error)",
        baselines=("unedited_residual",),
        controls=(),
        # equivalence margin: a third of the clean-disk renderer residual (0.014); set on 2026-12-07, after the
        # 2026-12-02 result (-0.0014) was known, so it is not pre-registered (issue 24)
        margin=0.005,
    ),
    # ------------------------------------------------------------------ support records
    _C(
        "coarse_to_fine_edits",
        "Coarse-to-fine edits",
        "Editing at large t changes coarse attributes, at small t details (at a matched size of change).",
        "coarse_to_fine",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "mean radial frequency (cycles/image) of the image change of an edit along +-v_1 at the smallest t minus "
        "at the largest t, at a matched RMS change, per sample",
        parent="coarse_to_fine",
    ),
    _C(
        "early_similarity_x",
        "Early similarity, x-side",
        "The same, for the latent bases span(v) in x-space.",
        "timestep_discrepancy",
        "support",
        "sample",
        "jackknife t over units",
        "greater",
        "as early_similarity, for the x-side bases v",
        baselines=("spectrum_matched",),
        parent="early_similarity",
    ),
    _C(
        "early_similarity_excess",
        "Early similarity beyond the spectrum",
        "Early samples share tangent spaces more than their power spectra alone explain.",
        "timestep_discrepancy",
        "support",
        "sample",
        "jackknife t over units",
        "greater",
        "early_similarity's per-pair trend minus the same trend on spectrum-matched random bases (difference of "
        "Spearman rho)",
        parent="early_similarity",
    ),
    _C(
        "early_similarity_geodesic",
        "Early similarity, geodesic distance",
        "The same trend, measured by the geodesic distance of the top-k spans (sensitive to a flat spectrum).",
        "timestep_discrepancy",
        "support",
        "sample",
        "jackknife t over units",
        "greater",
        "per sample pair, Spearman rho between -t and the geodesic distance of span(u) over all times; mean over pairs",
        baselines=("spectrum_matched",),
        parent="early_similarity",
    ),
    _C(
        "timestep_discrepancy_x",
        "Timestep discrepancy, x-side",
        "The same, for span(v).",
        "timestep_discrepancy",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "as timestep_discrepancy, for span(v)",
        baselines=("chance_level",),
        parent="timestep_discrepancy",
        null=0.25,
        sesoi=0.25,
    ),
    _C(
        "discrepancy_time_input",
        "Discrepancy from the time input alone",
        "With x_t held fixed, changing only the U-Net's time input moves the tangent space.",
        "timestep_discrepancy",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "per sample, the geodesic distance between span(u) at (x_ta, t_a) and (x_ta, t_b) (time input changed, "
        "state held) relative to its mean distance to the other samples at t_a and t_b (the same-time reference "
        "scale of timestep_discrepancy); the claim must exceed the smallest effect of interest 0.25",
        baselines=("chance_level", "noise_floor"),
        controls=("random_weights",),
        parent="timestep_discrepancy",
        null=0.25,
        sesoi=0.25,
    ),
    _C(
        "discrepancy_state",
        "Discrepancy from the state alone",
        "With the time input held fixed, changing only the state x_t moves the tangent space.",
        "timestep_discrepancy",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "per sample, the geodesic distance between span(u) at (x_ta, t_a) and (x_tb, t_a) (state changed, time "
        "input held) relative to its mean distance to the other samples at t_a and t_b; the claim must exceed "
        "the smallest effect of interest 0.25",
        baselines=("chance_level", "noise_floor"),
        controls=("random_weights",),
        parent="timestep_discrepancy",
        null=0.25,
        sesoi=0.25,
    ),
    _C(
        "similar_prompts_total",
        "Similar prompts (encoder included)",
        "The paper's statistic: prompt similarity against tangent distance, whatever its source (the text "
        "encoder's geometry, which a random-weight U-Net also passes on, included).",
        "prompt_influence",
        "support",
        "prompt-state",
        "Mantel",
        "less",
        "Mantel correlation (Spearman) between the caption-attribute similarity of two prompts and the geodesic "
        "distance of their tangent spaces span(u), averaged over prompt-states",
        baselines=("shuffled_prompts",),
        controls=("random_weights",),
        parent="similar_prompts",
        primary_model="shapes-text",
        min_units=10,
    ),
    _C(
        "similar_prompts_encoder",
        "Similar prompts (encoder similarity)",
        "The same, with prompt similarity from the model's own text encoder.",
        "prompt_influence",
        "support",
        "prompt-state",
        "Mantel",
        "less",
        "as similar_prompts, with cosine similarity of mean-pooled encoder embeddings",
        parent="similar_prompts",
        primary_model="shapes-text",
        min_units=10,
    ),
    _C(
        "empty_prompt_fades",
        "Distance to the empty prompt fades",
        "Bases under a prompt get closer to those under the empty prompt as t -> 0.",
        "prompt_influence",
        "support",
        "prompt-state",
        "sign-flip",
        "less",
        "mean distance between span(u) under a prompt and under the empty prompt at the smallest t minus at the "
        "largest t (rad), per prompt-state",
        parent="text_influence_fades",
        primary_model="shapes-text",
        min_units=10,
    ),
    _C(
        "editing_alignment",
        "Guided change follows the tangent",
        "The h-space change that x-space guidance along v_1 makes points along the tangent direction u_1 as much "
        "as a naive step along v_1 does.",
        "editing",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "cosine between the h-space change J (x^(N) - x_t) of the guided edit along +v_1 and u_1 minus the same "
        "cosine for a naive step along v_1 (1 up to the finite-difference error), at the middle edit time, per "
        "sample",
        parent="editing",
    ),
    _C(
        "editing_efficacy",
        "Guidance moves the renderer's factors more per unit of change",
        "Per unit of change of the state x_t, x-space guidance along v_1 changes the edited image's renderer "
        "factors more than a naive step along v_1 that moves x_t as far.",
        "editing",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "per sample, log of the guided edit's efficacy over the naive step's; efficacy = least-squares slope "
        "through the origin of the renderer-factor change (norm of the change of the factors fitted to the "
        "finished unedited and edited images, each factor in standard deviations of the training data) against "
        "the state change ||x^(N) - x_t|| over the gamma x N dose grid at the middle edit time; the naive step "
        "x_t + ||x^(N) - x_t|| v_1 moves the state as far (0: as efficient; log 1.25 = 0.223: 25 % more)",
        baselines=("naive_efficacy",),
        parent="editing",
        # equivalence margin fixed here on 2026-12-07 before the statistic was first run (issue 24, item 1)
        margin=0.223,
    ),
    _C(
        "editing_dose_response",
        "Guided edits grow with the guidance dose",
        "The renderer-factor change of a guided edit grows with the guidance strength gamma and the number of "
        "guidance steps N.",
        "editing",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "per sample, Spearman rho between the dose gamma * N and the guided edit's renderer-factor change (factor "
        "standard deviations) over the gamma x N grid at the middle edit time (+1: the change grows with every "
        "increase of the dose)",
        baselines=("naive",),
        parent="editing",
    ),
    _C(
        "coarse_to_fine_vs_gaussian",
        "Coarse to fine beyond the Gaussian",
        "The shift of the basis towards higher frequencies is larger than that of the optimal denoiser of a Gaussian "
        "fitted to the training data (the same top-k statistic on the Gaussian control's basis).",
        "coarse_to_fine",
        "support",
        "sample",
        "sign-flip",
        "greater",
        "coarse_to_fine's per-sample value minus the same value of the Gaussian control (top-k eigenvectors of the "
        "Jacobian of the output the model predicts, the h-analogue), per sample",
        baselines=("gaussian",),
        parent="coarse_to_fine",
    ),
    _C(
        "early_similarity_vs_gaussian",
        "Early similarity beyond the Gaussian",
        "The samples' tangent spaces drift apart towards t -> 0 more than under the Gaussian control, whose basis "
        "is the same for every sample at every t (it explains similarity, not its change).",
        "timestep_discrepancy",
        "support",
        "sample",
        "jackknife t over units",
        "greater",
        "early_similarity's per-pair trend (Spearman rho between -t and 1 - O, O the sigma-weighted overlap) minus "
        "the same trend on the Gaussian control's bases (difference of Spearman rho), mean over pairs",
        baselines=("gaussian",),
        parent="early_similarity",
    ),
    _C(
        "dataset_complexity_vs_gaussian",
        "Dataset complexity beyond the Gaussian",
        "The trend of the models' spread over data complexity remains after subtracting the spread of each "
        "model's Gaussian control (the optimal linear denoiser of its rung's data).",
        "dataset_complexity",
        "support",
        "rung",
        "nested permutation trend",
        "greater",
        "as dataset_complexity (the rung is the unit, seeds averaged within it, all rung labellings enumerated), "
        "for each model's spread minus the spread of its Gaussian control",
        baselines=("gaussian",),
        parent="dataset_complexity",
        primary_model="ladder",
        min_units=5,
    ),
    # ------------------------------------------------------------------ the book's extensions
    _C(
        "ground_truth_matched",
        "Basis on the data manifold (vs same-spectrum random)",
        "On procedural data the top local latent basis lies in the true tangent space of the data manifold, "
        "pushed to x_t through the DDIM inversion (where the basis lives), more than random directions with the "
        "same power spectrum do.",
        "ground_truth",
        "extension",
        "image",
        "sign-flip",
        "greater",
        "mean energy fraction of the top-k x-side local basis in the renderer's tangent span pushed to x_t (exact "
        "derivatives of the inversion) minus that of its spectrum-matched random twin, at each image's held-out best t",
        baselines=("spectrum_matched", "isotropic_random"),
        controls=("random_weights",),
        outcome=("above same-spectrum random", "below same-spectrum random"),
    ),
    _C(
        "ground_truth_pca",
        "Basis vs local PCA",
        "How the basis, in the pushed tangent span, compares with the principal directions of nearby data images "
        "in the clean image's tangent span (a data-side estimate that needs no model).",
        "ground_truth",
        "extension",
        "image",
        "sign-flip",
        "greater",
        "mean energy fraction of the basis in the pushed tangent span at each image's held-out best t minus that "
        "of the top-k local PCA directions of the nearest pool images in the clean tangent span",
        baselines=("local_pca",),
        controls=("random_weights",),
        outcome=("above local PCA", "below local PCA"),
    ),
    _C(
        "ground_truth_denoiser",
        "Basis vs denoiser Jacobian",
        "How the basis compares with the top right singular vectors of the denoiser's Jacobian dx0_hat/dx_t at "
        "the same x_t, both measured in the pushed tangent span.",
        "ground_truth",
        "extension",
        "image",
        "sign-flip",
        "greater",
        "mean energy fraction of the basis minus that of the top-k right singular vectors of dx0_hat/dx_t, both in "
        "the pushed tangent span at each image's held-out best t",
        baselines=("denoiser_jacobian",),
        controls=("random_weights",),
        outcome=("above the denoiser Jacobian", "below the denoiser Jacobian"),
    ),
)

_BY_ID = {c.id: c for c in CLAIMS}
#: The paper's primary claims: the family of Holm's correction.
PRIMARY: tuple[str, ...] = tuple(c.id for c in CLAIMS if c.kind == "paper")


def get(record_id: str) -> ClaimSpec:
    """The spec of a record name (``"<id>"`` or ``"<id>@<model>"``); ``KeyError`` listing the ids."""
    base = record_id.split("@", 1)[0]
    if base not in _BY_ID:
        raise KeyError(f"unknown claim {record_id!r}; registered claims: {list(_BY_ID)}")
    return _BY_ID[base]


#: The fewest units each registered test can run on at all (:mod:`pullback_utils.analysis.inference` refuses fewer:
#: the sign-flip test needs 2 values, the jackknife over unit pairs 4, the permutation trend 3, Mantel 4).
_TEST_MIN_UNITS: dict[str, int] = {"sign-flip": 2, "jackknife t over units": 4, "permutation trend": 3, "Mantel": 4}
#: The chapter parameter that sets how many units of a kind a chapter has.
_UNIT_PARAMETER: dict[str, str] = {"sample": "n_samples", "image": "n_samples"}


#: Claims of other chapters that a chapter also records, per model (``"<id>@<model>"``), with their own tests.
PER_MODEL_RECORDS: dict[str, tuple[str, ...]] = {"dataset_complexity": ("coarse_to_fine", "early_similarity")}


def minimum_units(chapter: str) -> dict[str, int]:
    """``{parameter: fewest value}`` that every test of ``chapter``'s records can run on, e.g.
    ``{"n_samples": 4}`` for a chapter with a jackknife test over samples (its own claims and those it
    records per model, :data:`PER_MODEL_RECORDS`); ``{}`` when none applies."""
    out: dict[str, int] = {}
    for c in CLAIMS:
        param = _UNIT_PARAMETER.get(c.unit)
        if (c.chapter == chapter or c.id in PER_MODEL_RECORDS.get(chapter, ())) and param is not None:
            out[param] = max(out.get(param, 0), _TEST_MIN_UNITS.get(c.test, 0))
    return out


def outcome_words(spec: ClaimSpec, verdict: str) -> str:
    """What a verdict is called for this claim (extensions use their own words; a claimed-side outcome
    that a control shows too keeps "not attributable to learning")."""
    from pullback_utils.analysis.inference import NOT_REPRODUCED, REPRODUCED

    if spec.outcome is not None:
        if verdict == REPRODUCED:
            return spec.outcome[0]
        if verdict == NOT_LEARNED:
            return f"{spec.outcome[0]}, {NOT_LEARNED}"
        if verdict == NOT_REPRODUCED:
            return spec.outcome[1]
    return verdict
