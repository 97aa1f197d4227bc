"""The quality bar of a model that decides a claim, and the record of it kept beside the weights.

A verdict of the book is a property of the checkpoint it was measured on, so a model that decides a
primary claim must draw its data. The bar (:func:`check_bar`), measured by the model's card
(``python -m pullback_utils.zoo card NAME``) on samples from a seed the model never saw:

- **clean samples** >= :data:`CLEAN_SHARE` (procedural families: renderer-fit foreground IoU >= 0.9, the
  card's ``fidelity.samples_clean``);
- **memorisation at most at the fresh-data rate**: the share of samples closer to a training image
  than the 5th percentile of fresh data (the card's ``memorisation.share_samples_closer_than_fresh_p05``)
  at most the upper end of :func:`memorisation_band`: 5 % + 2 points, or the 99 % range that a model
  drawing exactly its data gives at the card's sample size, whichever is wider (the threshold is itself
  a quantile of the card's fresh images, so a perfect model's share of 256 samples strays beyond +-2
  points far more often than a binomial count would; the tests simulate it). A share *below* the band
  means samples sit further from the training set than fresh draws do: that is not memorisation but a
  fidelity signal (the clean share measures fidelity), so it is reported as a note, not a miss. On the
  ladder's easy rungs (2-6 factors, 20,000 training images that cover the factor space densely) fresh
  data lies almost on the training set and samples that are clean but not pixel-exact score 0 %;
- **text models**: every attribute the chapter's prompts vary is obeyed in >= :data:`OBEY_SHARE` of
  the samples (at the guidance the card samples with, the book's guidance 1).

The card writes what it measured to ``quality.json`` in the model folder, keyed by the weights'
SHA-256 (``WEIGHTS.sha256``): after retraining, the stored numbers no longer match the weights and the
model counts as unmeasured until its card is written again. :func:`require_bar` is what a chapter calls
before it decides a claim on a model (``pullback_utils.chapters.chapter.setup``): a model that misses the bar is
refused unless the chapter runs as an *exploration*, which its records and the scorecard then show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pullback_utils._io import read_json, write_json
from pullback_utils._validate import is_int

__all__ = [
    "CLEAN_SHARE",
    "OBEY_SHARE",
    "MEMO_EXPECTED",
    "MEMO_POINTS",
    "MEMO_LEVEL",
    "QUALITY_FILE",
    "Quality",
    "memorisation_band",
    "card_numbers",
    "check_bar",
    "write_quality",
    "read_quality",
    "model_quality",
    "require_bar",
    "BarNotMet",
    "varied_attributes",
    "TEXT_ATTRIBUTES",
]

CLEAN_SHARE = 0.90
OBEY_SHARE = 0.90
MEMO_EXPECTED = 0.05  # the memorisation share of a model that draws fresh data
MEMO_POINTS = 0.02  # +-2 points around it ...
MEMO_LEVEL = 0.99  # ... or the central 99 % range of a perfect model at the card's size, if wider
QUALITY_FILE = "quality.json"
TEXT_ATTRIBUTES = ("shape", "colour", "background", "position", "size")


class BarNotMet(ValueError):
    """A model that misses the quality bar was asked to decide a primary claim."""


@dataclass
class Quality:
    """The bar's outcome for one model: ``meets``, the list of ``misses`` in words, the numbers."""

    meets: bool
    misses: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    measured: bool = True
    notes: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        """ "meets the bar" or "misses the bar: ..." (one line, for cards, errors and the scorecard)."""
        if not self.measured:
            return "not measured against the bar: " + "; ".join(self.misses)
        text = "meets the bar" if self.meets else "misses the bar: " + "; ".join(self.misses)
        return text + "".join(f" (note: {n})" for n in self.notes)


@lru_cache(maxsize=32)
def _rank_band(n_samples: int, n_fresh: int, level: float, sims: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Central ``level`` range of the memorisation share when samples and fresh data come from one
    distribution. The statistic depends only on ranks (threshold: the fresh distances' 5 % quantile,
    linear interpolation as ``torch.quantile``), so uniforms simulate it exactly."""
    rng = np.random.default_rng(seed)
    fresh = rng.random((sims, n_fresh))
    thr = np.quantile(fresh, MEMO_EXPECTED, axis=1)
    share = (rng.random((sims, n_samples)) < thr[:, None]).mean(1)
    a = (1 - level) / 2
    return float(np.quantile(share, a)), float(np.quantile(share, 1 - a))


def memorisation_band(n_samples: int, n_fresh: int | None = None, level: float = MEMO_LEVEL) -> tuple[float, float]:
    """The accepted range of the memorisation share at a card of ``n_samples`` samples measured
    against ``n_fresh`` fresh images (default the same): the wider of 5 % +- 2 points and the central
    ``level`` range of a model that draws exactly its data (simulated, seeded)."""
    if not is_int(n_samples) or n_samples < 1:
        raise ValueError(f"n_samples: must be an int >= 1, got {n_samples!r}")
    lo, hi = _rank_band(int(n_samples), int(n_fresh or n_samples), float(level))
    return min(lo, MEMO_EXPECTED - MEMO_POINTS), max(hi, MEMO_EXPECTED + MEMO_POINTS)


def card_numbers(card: dict) -> dict:
    """The numbers the bar reads, from a card's ``card.json`` dict."""
    fid = card.get("fidelity") or {}
    out = {
        "n_samples": int(card["n_samples"]),
        "steps": card.get("steps"),
        "memorisation": float(card["memorisation"]["share_samples_closer_than_fresh_p05"]),
    }
    if "samples_clean" in fid:
        out["clean"] = float(fid["samples_clean"])
    if "prompts_obeyed" in card:
        out["obeyed"] = {k: float(card["prompts_obeyed"][k]) for k in TEXT_ATTRIBUTES if k in card["prompts_obeyed"]}
        out["guidance"] = float(card.get("guidance", 1.0))
    return out


def check_bar(numbers: dict, attributes: tuple[str, ...] | list[str] | None = None) -> Quality:
    """The bar applied to :func:`card_numbers` output.

    attributes: the prompt attributes a chapter varies (text models; default: every attribute the
        card measured). A model without a fidelity score (no renderer: ``scenes``, ``textures``)
        misses the bar's clean-share part, since nothing shows it draws its data.
    """
    misses = []
    clean = numbers.get("clean")
    if clean is None:
        misses.append("no clean-sample share (no renderer fit for this dataset)")
    elif clean < CLEAN_SHARE:
        misses.append(f"clean samples {100 * clean:.1f} % < {100 * CLEAN_SHARE:.0f} %")
    lo, hi = memorisation_band(numbers["n_samples"])
    memo = numbers["memorisation"]
    if memo > hi:
        misses.append(f"memorisation share {100 * memo:.1f} % > {100 * hi:.1f} % (fresh data: 5 %)")
    notes = []
    if memo < lo:  # further from the training set than fresh data: not memorisation (see the module doc)
        notes.append(
            f"samples are further from the training set than fresh data (memorisation share "
            f"{100 * memo:.1f} % < {100 * lo:.1f} %)"
        )
    obeyed = numbers.get("obeyed")
    if obeyed is not None:
        wanted = list(attributes) if attributes is not None else list(obeyed)
        unknown = [a for a in wanted if a not in obeyed]
        if unknown:
            raise ValueError(f"attributes: {unknown} are not measured by the card; measured: {list(obeyed)}")
        misses += [
            f"'{a}' obeyed {100 * obeyed[a]:.0f} % < {100 * OBEY_SHARE:.0f} %" for a in wanted if obeyed[a] < OBEY_SHARE
        ]
    return Quality(meets=not misses, misses=misses, numbers=dict(numbers), notes=notes)


def varied_attributes(prompts: list[str]) -> list[str]:
    """The attributes (of :data:`TEXT_ATTRIBUTES`) whose words differ between ``prompts``, read with
    the captions' vocabulary; an attribute some prompts state and others leave out counts as varied.
    Prompts outside the vocabulary (your own model's) vary nothing the bar can check: ``[]``."""
    from pullback_utils.zoo.captions import caption_attributes

    try:
        parsed = [caption_attributes(p) for p in prompts]
    except ValueError:
        return []
    return [a for a in TEXT_ATTRIBUTES if len({d.get(a) for d in parsed}) > 1]


def _digest(folder: Path) -> dict[str, str]:
    from pullback_utils.diffusion.weights import file_sha256, read_weights_digest, weight_files

    stored = read_weights_digest(folder)
    if stored:
        return dict(stored)
    return {str(f.relative_to(folder)): file_sha256(f) for f in weight_files(folder)}


def write_quality(folder: Path | str, card: dict) -> Path:
    """Write ``quality.json`` (the card's bar numbers, keyed by the weights' digest) into the model
    ``folder``; returns its path."""
    folder = Path(folder)
    blob = {
        "weights": _digest(folder),
        "numbers": card_numbers(card),
        "bar": {
            "clean_share": CLEAN_SHARE,
            "obey_share": OBEY_SHARE,
            "memorisation_expected": MEMO_EXPECTED,
            "memorisation_points": MEMO_POINTS,
            "memorisation_level": MEMO_LEVEL,
        },
    }
    path = folder / QUALITY_FILE
    write_json(path, blob)
    return path


def read_quality(folder: Path | str) -> dict | None:
    """The stored numbers of the model ``folder`` if they were measured on its present weights, else
    ``None`` (no ``quality.json``, unreadable, or weights changed since)."""
    folder = Path(folder)
    path = folder / QUALITY_FILE
    if not path.is_file():
        return None
    try:
        blob = read_json(path)
        numbers, weights = blob["numbers"], blob["weights"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(numbers, dict) or weights != _digest(folder):
        return None
    return numbers


def model_quality(model: str, attributes: tuple[str, ...] | list[str] | None = None) -> Quality | None:
    """The bar's outcome for a model given as in ``load_model`` (a bundled name or a folder), or
    ``None`` for a model the zoo does not describe (a hub id, a folder without ``zoo.json``)."""
    from pullback_utils.zoo.registry import MODELS, is_bundled, model_dir

    if is_bundled(model):
        folder = model_dir(model)
    elif Path(model).is_dir() and (Path(model) / "zoo.json").is_file():
        folder = Path(model)
    else:
        return None if model not in MODELS else Quality(False, [f"{model!r} has no weights yet"], measured=False)
    numbers = read_quality(folder)
    if numbers is None:
        return Quality(
            False,
            [
                f"no card measured on these weights ({folder / QUALITY_FILE}); run "
                f"`python -m pullback_utils.zoo card {model}`"
            ],
            measured=False,
        )
    return check_bar(numbers, attributes)


def require_bar(
    model: str, chapter: str, *, exploration: bool, attributes: tuple[str, ...] | list[str] | None = None
) -> Quality | None:
    """What a chapter calls before it decides a primary claim on ``model``: the model's
    :class:`Quality`, or :class:`BarNotMet` when it misses the bar and ``exploration`` is false.
    Models the zoo does not describe (your own folder or hub id) pass with ``None``."""
    q = model_quality(model, attributes)
    if q is None or q.meets or exploration:
        return q
    raise BarNotMet(
        f"{chapter}: model {model!r} {q.sentence()}. Its verdicts would describe a model that "
        f"does not draw its data, so it cannot decide the chapter's claims. Run it as an "
        f"exploration (parameter exploration=True, e.g. `-p exploration true`; the scorecard "
        f"marks its records), or use a model that meets the bar (see the model cards)."
    )
