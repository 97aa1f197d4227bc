"""The claims registry: every claim the book tests, in one place (the only copy of each wording).

A :class:`ClaimSpec` fixes, before any result is seen: the claim in words, the chapter that measures
it, the unit of inference, the test, the claimed direction and the null, the statistic in words, the
baselines and controls a record must carry, and the primary model. The paper's primary claims form
the family over which Holm's correction runs; support records (another side of the Jacobian, an
ablation, the same statistic on another model) and the book's extensions are reported beside them.
An extension is never "reproduced" or "not reproduced": it has its own outcome words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ClaimSpec", "CLAIMS", "PRIMARY", "get", "support_of", "outcome_words"]


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
        test: the test (a function of :mod:`pullback_utils.inference`).
        direction: ``"greater"`` or ``"less"``: the side of ``null`` the claim predicts.
        statistic: the statistic in words, units included.
        baselines, controls: names a record must carry (matched nulls; ``random_weights`` = the same
            statistic on a random-weight network of the same architecture).
        primary_model: the model the claim is decided on (fixed in advance).
        parent: for support records, the claim they support.
        null: the no-effect value.
        outcome: extensions only: words for the significant outcomes on the claimed side and the other.
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


_C = ClaimSpec
CLAIMS: tuple[ClaimSpec, ...] = (
    # ------------------------------------------------------------------ the paper's claims
    _C("coarse_to_fine", "Coarse to fine",
       "Early in generation (t near T) the local basis is dominated by low frequencies, later by high ones.",
       "coarse_to_fine", "paper", "sample", "sign-flip", "greater",
       "low-frequency energy share of the top-k local basis at the largest t minus at the smallest t, per sample",
       baselines=("white_noise_low_share",), controls=("random_weights",)),
    _C("early_similarity", "Early cross-sample similarity",
       "At early timesteps different samples share similar tangent spaces; the cross-sample distance grows "
       "as t -> 0.",
       "timestep_discrepancy", "paper", "sample", "jackknife t over units", "greater",
       "mean cross-sample geodesic distance of the tangent spaces span(u) at the smallest t minus at the largest "
       "t (rad), over sample pairs",
       baselines=("spectrum_matched",), controls=("random_weights",)),
    _C("timestep_discrepancy", "Timestep discrepancy",
       "The tangent spaces of one sample at different timesteps differ, already between adjacent timesteps.",
       "timestep_discrepancy", "paper", "sample", "sign-flip", "greater",
       "geodesic distance between one sample's tangent spaces span(u) at adjacent timesteps minus the solver "
       "noise floor (rad), per sample",
       baselines=("noise_floor", "spectrum_matched"), controls=("random_weights",)),
    _C("dataset_complexity", "Dataset complexity",
       "The simpler the training data, the more consistent the tangent spaces across samples.",
       "dataset_complexity", "paper", "model", "permutation trend", "greater",
       "Spearman rho between a ladder rung's number of free factors and its model's mean cross-sample distance "
       "of span(u) over t (rung x training seed)",
       baselines=("spectrum_matched",), controls=("random_weights",), primary_model="ladder", min_units=12),
    _C("similar_prompts", "Similar prompts, similar tangents",
       "Similar prompts yield similar tangent spaces.",
       "prompt_influence", "paper", "prompt-state", "Mantel", "less",
       "Mantel correlation (Spearman) between the caption-attribute similarity of two prompts and the geodesic "
       "distance of their tangent spaces span(u), averaged over prompt-states",
       baselines=("shuffled_prompts",), controls=("random_weights",), primary_model="shapes-text", min_units=10),
    _C("text_influence_fades", "Text influence fades",
       "The model depends less on the text at later timesteps: bases under different prompts get closer as "
       "t -> 0.",
       "prompt_influence", "paper", "prompt-state", "sign-flip", "less",
       "mean geodesic distance between the tangent spaces span(u) under different prompts at the smallest t "
       "minus at the largest t (rad), per prompt-state",
       baselines=("spectrum_matched",), controls=("random_weights",), primary_model="shapes-text", min_units=10),
    _C("editing", "Guidance beats naive traversal",
       "x-space guidance along the local basis edits an image while keeping it on the data: better than moving "
       "x_t naively by a step of the same size.",
       "editing", "paper", "sample", "sign-flip", "greater",
       "renderer-fit RMS residual of the naively edited image minus that of the guided edit at the same size of "
       "change, per sample (both signs, averaged over the edit times; models without a renderer: their own "
       "denoising error)",
       baselines=("unedited_residual",), controls=()),
    # ------------------------------------------------------------------ support records
    _C("coarse_to_fine_edits", "Coarse-to-fine edits",
       "Editing at large t changes coarse attributes, at small t details (at a matched size of change).",
       "coarse_to_fine", "support", "sample", "sign-flip", "greater",
       "mean radial frequency (cycles/image) of the image change of an edit along +-v_1 at the smallest t minus "
       "at the largest t, at a matched RMS change, per sample", parent="coarse_to_fine"),
    _C("early_similarity_x", "Early similarity, x-side",
       "The same, for the latent bases span(v) in x-space.",
       "timestep_discrepancy", "support", "sample", "jackknife t over units", "greater",
       "as early_similarity, for span(v)", baselines=("spectrum_matched",), parent="early_similarity"),
    _C("early_similarity_excess", "Early similarity beyond the spectrum",
       "Early samples share tangent spaces more than their power spectra alone explain.",
       "timestep_discrepancy", "support", "sample", "jackknife t over units", "greater",
       "early_similarity's statistic minus the same statistic on spectrum-matched random bases (rad)",
       parent="early_similarity"),
    _C("timestep_discrepancy_x", "Timestep discrepancy, x-side",
       "The same, for span(v).", "timestep_discrepancy", "support", "sample", "sign-flip", "greater",
       "as timestep_discrepancy, for span(v)", baselines=("noise_floor",), parent="timestep_discrepancy"),
    _C("discrepancy_time_input", "Discrepancy from the time input alone",
       "With x_t held fixed, changing only the U-Net's time input moves the tangent space.",
       "timestep_discrepancy", "support", "sample", "sign-flip", "greater",
       "distance between span(u) at (x_t, t_a) and (x_t, t_b) minus the noise floor (rad), per sample",
       baselines=("noise_floor",), parent="timestep_discrepancy"),
    _C("discrepancy_state", "Discrepancy from the state alone",
       "With the time input held fixed, changing only the state x_t moves the tangent space.",
       "timestep_discrepancy", "support", "sample", "sign-flip", "greater",
       "distance between span(u) at (x_ta, t) and (x_tb, t) minus the noise floor (rad), per sample",
       baselines=("noise_floor",), parent="timestep_discrepancy"),
    _C("similar_prompts_encoder", "Similar prompts (encoder similarity)",
       "The same, with prompt similarity from the model's own text encoder.",
       "prompt_influence", "support", "prompt-state", "Mantel", "less",
       "as similar_prompts, with cosine similarity of mean-pooled encoder embeddings", parent="similar_prompts",
       primary_model="shapes-text", min_units=10),
    _C("empty_prompt_fades", "Distance to the empty prompt fades",
       "Bases under a prompt get closer to those under the empty prompt as t -> 0.",
       "prompt_influence", "support", "prompt-state", "sign-flip", "less",
       "mean distance between span(u) under a prompt and under the empty prompt at the smallest t minus at the "
       "largest t (rad), per prompt-state", parent="text_influence_fades", primary_model="shapes-text",
       min_units=10),
    _C("editing_alignment", "Guided change follows the tangent",
       "The h-space change that x-space guidance along v_1 makes points along the tangent direction u_1.",
       "editing", "support", "sample", "sign-flip", "greater",
       "cosine between the h-space change J (x^(N) - x_t) of the guided edit along +v_1 and u_1 at the middle edit "
       "time, per sample (a naive step along v_1 has cosine 1 by construction)",
       parent="editing"),
    # ------------------------------------------------------------------ the book's extensions
    _C("ground_truth_matched", "Basis on the data manifold (vs same-spectrum random)",
       "On procedural data the top local latent basis lies in the true tangent space of the data manifold, "
       "pushed to x_t through the DDIM inversion (where the basis lives), more than random directions with the "
       "same power spectrum do.",
       "ground_truth", "extension", "image", "sign-flip", "greater",
       "mean energy fraction of the top-k x-side local basis in the renderer's tangent span pushed to x_t (exact "
       "derivatives of the inversion) minus that of its spectrum-matched random twin, at each image's held-out best t",
       baselines=("spectrum_matched", "isotropic_random"), controls=("random_weights",),
       outcome=("above same-spectrum random", "below same-spectrum random")),
    _C("ground_truth_pca", "Basis vs local PCA",
       "How the basis, in the pushed tangent span, compares with the principal directions of nearby data images "
       "in the clean image's tangent span (a data-side estimate that needs no model).",
       "ground_truth", "extension", "image", "sign-flip", "greater",
       "mean energy fraction of the basis in the pushed tangent span at each image's held-out best t minus that "
       "of the top-k local PCA directions of the nearest pool images in the clean tangent span",
       baselines=("local_pca",), controls=("random_weights",),
       outcome=("above local PCA", "below local PCA")),
    _C("ground_truth_denoiser", "Basis vs denoiser Jacobian",
       "How the basis compares with the top right singular vectors of the denoiser's Jacobian dx0_hat/dx_t at "
       "the same x_t, both measured in the pushed tangent span.",
       "ground_truth", "extension", "image", "sign-flip", "greater",
       "mean energy fraction of the basis minus that of the top-k right singular vectors of dx0_hat/dx_t, both in "
       "the pushed tangent span at each image's held-out best t",
       baselines=("denoiser_jacobian",), controls=("random_weights",),
       outcome=("above the denoiser Jacobian", "below the denoiser Jacobian")),
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


#: The fewest units each registered test can run on at all (:mod:`pullback_utils.inference` refuses fewer:
#: the sign-flip test needs 2 values, the jackknife over unit pairs 4, the permutation trend 3, Mantel 4).
TEST_MIN_UNITS: dict[str, int] = {"sign-flip": 2, "jackknife t over units": 4, "permutation trend": 3, "Mantel": 4}
#: The chapter parameter that sets how many units of a kind a chapter has.
UNIT_PARAMETER: dict[str, str] = {"sample": "n_samples", "image": "n_samples"}


def minimum_units(chapter: str) -> dict[str, int]:
    """``{parameter: fewest value}`` that every test of ``chapter``'s records can run on, e.g.
    ``{"n_samples": 4}`` for a chapter with a jackknife test over samples; ``{}`` when none applies."""
    out: dict[str, int] = {}
    for c in CLAIMS:
        param = UNIT_PARAMETER.get(c.unit)
        if c.chapter == chapter and param is not None:
            out[param] = max(out.get(param, 0), TEST_MIN_UNITS.get(c.test, 0))
    return out


def support_of(claim_id: str) -> list[ClaimSpec]:
    """The support records of a claim, in registry order."""
    return [c for c in CLAIMS if c.parent == claim_id]


def outcome_words(spec: ClaimSpec, verdict: str) -> str:
    """What a verdict is called for this claim (extensions use their own words)."""
    from ..inference import NOT_REPRODUCED, REPRODUCED

    if spec.outcome is not None:
        if verdict == REPRODUCED:
            return spec.outcome[0]
        if verdict == NOT_REPRODUCED:
            return spec.outcome[1]
    return verdict
