"""Lookup of the bundled models.

Each bundled model is a folder ``pullback_utils/zoo/weights/<name>/`` holding

- ``zoo.json``: ``{"name": str, "kind": "pixel" | "text", "dataset": str, ...}``
  (``kind == "text"`` models also name their text encoder, ``"text_encoder": "minilm"``);
- ``unet/`` and ``scheduler/``: diffusers ``save_pretrained`` folders (safetensors weights);
- ``model_index.json``: so that the folder is also a diffusers pipeline folder.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available_models() -> list[str]:
    """Names of the bundled models whose weights are present, sorted."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "zoo.json").is_file())


def model_dir(name: str) -> Path:
    """Folder of bundled model ``name``; ``KeyError`` listing the valid names otherwise."""
    path = WEIGHTS_DIR / name
    if not (path / "zoo.json").is_file():
        raise KeyError(f"no bundled model named {name!r}; bundled models: {available_models()}")
    return path


def model_info(name: str) -> dict:
    """The parsed ``zoo.json`` of bundled model ``name``."""
    return json.loads((model_dir(name) / "zoo.json").read_text())
