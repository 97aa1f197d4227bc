"""The zoo's catalogue and the lookup of bundled model folders.

:data:`MODELS` is the one catalogue: every model the zoo can train or load, with the dataset it is
trained on, its kind, its training seed and its U-Net width. The dataset-complexity ladder adds
``len(RUNGS) * len(LADDER_SEEDS)`` models ``"ladder-<rung>-s<seed>"`` trained with one shared recipe,
:data:`LADDER_RECIPE` (equal budget on every rung).

Each bundled model is a folder ``pullback_utils/zoo/weights/<name>/`` (ladder models:
``weights/ladder/<name>/``) holding

- ``zoo.json``: ``{"name": str, "kind": "pixel" | "text", "dataset": str, ...}``
  (``kind == "text"`` models also name their text encoder, ``"text_encoder": "minilm"``);
- ``unet/`` and ``scheduler/``: diffusers ``save_pretrained`` folders (safetensors weights);
- ``model_index.json``: so that the folder is also a diffusers pipeline folder.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from pullback_utils.zoo.ladder import RUNGS

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LADDER_DIR = "ladder"
LADDER_SEEDS: tuple[int, ...] = (0, 1, 2)
#: The ladder's shared training recipe (keyword arguments of :func:`pullback_utils.zoo.train.train`).
LADDER_RECIPE: dict = {
    "steps": 6000,
    "batch_size": 16,
    "lr": 8e-4,
    "warmup": 200,
    "decay_from": 3000,
    "lr_final": 4e-5,
    "n_train": 20000,
    "channels": (16, 32, 32),
}
DEFAULT_CHANNELS: tuple[int, int, int] = (32, 64, 64)


def ladder_name(rung: int, seed: int) -> str:
    """``"ladder-<rung>-s<seed>"``."""
    return f"ladder-{rung}-s{seed}"


#: name -> {"kind", "dataset", "seed", "channels"} for every model of the zoo, in the zoo's order.
MODELS: dict[str, dict] = {
    "disks": {"kind": "pixel", "dataset": "disks", "seed": 0, "channels": DEFAULT_CHANNELS},
    "shapes": {"kind": "pixel", "dataset": "shapes", "seed": 0, "channels": DEFAULT_CHANNELS},
    "scenes": {"kind": "pixel", "dataset": "scenes", "seed": 0, "channels": DEFAULT_CHANNELS},
    "textures": {"kind": "pixel", "dataset": "textures", "seed": 0, "channels": DEFAULT_CHANNELS},
    "shapes-text": {"kind": "text", "dataset": "shapes-text", "seed": 0, "channels": DEFAULT_CHANNELS},
}
MODELS.update(
    {
        ladder_name(r, s): {
            "kind": "pixel",
            "dataset": f"ladder-{r}",
            "seed": s,
            "rung": r,
            "channels": tuple(LADDER_RECIPE["channels"]),
        }
        for s in LADDER_SEEDS
        for r in RUNGS
    }
)
#: The ladder's model names, seed-major (every rung's first seed first), the order it is trained in.
LADDER_MODELS: tuple[str, ...] = tuple(n for n in MODELS if "rung" in MODELS[n])
#: The main zoo's model names (the book's chapters use these), in the zoo's order.
ZOO_MODELS: tuple[str, ...] = tuple(n for n in MODELS if n not in LADDER_MODELS)
#: Models that decide a primary claim get training-seed replicates ``<name>-s<seed>``: the same data
#: family, recipe and architecture, another seed (training draw, initial weights, batch order). Seed 0
#: is the model itself: ``"disks-s0"`` names ``"disks"``.
_REPLICATED: tuple[str, ...] = ("disks", "shapes", "shapes-text")
_REPLICA_SEEDS: tuple[int, ...] = (0, 1, 2)
_SEED_ALIASES: dict[str, str] = {f"{n}-s{MODELS[n]['seed']}": n for n in _REPLICATED}
MODELS.update(
    {
        f"{n}-s{s}": {**MODELS[n], "seed": s, "replica_of": n}
        for n in _REPLICATED
        for s in _REPLICA_SEEDS
        if s != MODELS[n]["seed"]
    }
)
#: The seed replicates' names (seed 0 excluded: it is the model itself), in the zoo's order.
REPLICA_MODELS: tuple[str, ...] = tuple(n for n in MODELS if "replica_of" in MODELS[n])


def canonical_name(name: str) -> str:
    """``name`` with a seed alias resolved (``"disks-s0"`` -> ``"disks"``); other names unchanged."""
    return _SEED_ALIASES.get(name, name) if isinstance(name, str) else name


def replicas(name: str) -> list[str]:
    """The catalogue's seed replicates of ``name``, seed 0 (``name`` itself) first; ``[name]`` for a
    model without replicates."""
    name = canonical_name(name)
    return [name] + [n for n in REPLICA_MODELS if MODELS[n]["replica_of"] == name]


def suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_model_name(name: str) -> dict:
    """The catalogue entry of ``name`` (seed aliases resolved); ``ValueError`` listing the valid names
    otherwise."""
    name = canonical_name(name)
    if name not in MODELS:
        raise ValueError(
            f"name: unknown zoo model {name!r}{suggest(name, list(MODELS) + list(_SEED_ALIASES))}; "
            f"valid models: {list(ZOO_MODELS)}, their seed replicates <name>-s<seed> "
            f"({list(_REPLICATED)}, seeds {list(_REPLICA_SEEDS)}) and the ladder's "
            f"{LADDER_MODELS[0]!r} ... {LADDER_MODELS[-1]!r} (ladder-<rung>-s<seed>, rungs "
            f"{list(RUNGS)}, seeds {list(LADDER_SEEDS)})"
        )
    return MODELS[name]


def default_folder(name: str) -> Path:
    """Where model ``name`` is bundled (whether or not its weights exist yet)."""
    check_model_name(name)
    name = canonical_name(name)
    return WEIGHTS_DIR / LADDER_DIR / name if name in LADDER_MODELS else WEIGHTS_DIR / name


def available_models(*, ladder: bool = False) -> list[str]:
    """Names of the bundled models whose weights are present, in the zoo's order (``ladder``: the
    ladder's models instead of the main zoo's)."""
    pool = LADDER_MODELS if ladder else ZOO_MODELS + REPLICA_MODELS
    found = [n for n in pool if (default_folder(n) / "zoo.json").is_file()]
    if not ladder and WEIGHTS_DIR.is_dir():  # folders outside the catalogue (e.g. added by hand)
        found += sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.name not in MODELS and (p / "zoo.json").is_file())
    return found


def is_bundled(name: str) -> bool:
    """Whether ``name`` is a bundled model with weights present (main zoo, seed replicate or ladder)."""
    name = canonical_name(name)
    if name in MODELS:
        return (default_folder(name) / "zoo.json").is_file()
    return name in available_models()


def model_dir(name: str) -> Path:
    """Folder of bundled model ``name``; ``KeyError`` listing the valid names otherwise."""
    name = canonical_name(name)
    path = default_folder(name) if name in MODELS else WEIGHTS_DIR / name
    if name in REPLICA_MODELS and not (path / "zoo.json").is_file():
        raise KeyError(
            f"{name!r} is a catalogued seed replicate of {MODELS[name]['replica_of']!r} that has not "
            f"been trained yet: `python -m pullback_utils.zoo train {name}` (or, on a GPU, "
            f"`python -m pullback_utils.zoo train-many {name} --device cuda`)"
        )
    if not (path / "zoo.json").is_file():
        valid = available_models() + available_models(ladder=True)
        raise KeyError(
            f"no bundled model named {name!r}{suggest(name, valid)}; bundled models: "
            f"{available_models()}; ladder models: {available_models(ladder=True) or 'none trained'}"
        )
    return path


def read_info(folder: Path | str) -> dict:
    """The parsed ``zoo.json`` of a model folder (bundled or not); ``ValueError`` naming the file
    when it is missing or not a JSON object."""
    f = Path(folder) / "zoo.json"
    try:
        info = json.loads(f.read_text())
    except FileNotFoundError:
        raise ValueError(f"model folder: {f} does not exist (is {folder} a zoo model folder?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"model folder: cannot read {f}: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"model folder: {f} must hold a JSON object, got {type(info).__name__}")
    return info


def model_info(name: str) -> dict:
    """The parsed ``zoo.json`` of bundled model ``name``."""
    return read_info(model_dir(name))


def model_dataset(model: object) -> str | None:
    """The zoo dataset a model was trained on (bundled name or a folder with ``zoo.json``), else ``None``."""
    from pathlib import Path

    name = str(getattr(model, "name", ""))
    if is_bundled(name):
        return model_info(name).get("dataset")
    if (Path(name) / "zoo.json").is_file():
        return read_info(name).get("dataset")
    return None
