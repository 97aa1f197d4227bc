"""The model map: a hub id (or any model name a chapter is given) pointed at a local folder, without editing a
parameter file -- e.g. the paper's hub ids at random-weight replicas (:mod:`pullback_utils.zoo.replicas`).

Standard library only, so that the book's command line reads it without importing torch;
:func:`pullback_utils.zoo.loading.load_model` is where the map is applied.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODEL_MAP_ENV", "model_map", "parse_model_map", "format_model_map", "resolve_model_reference"]

#: environment variable of the model map: ``ID=FOLDER`` entries separated by ``;`` (the book's ``--model-map``
#: sets it, so chapter kernels inherit it)
MODEL_MAP_ENV = "PULLBACK_MODEL_MAP"


def parse_model_map(entries: list[str] | str, name: str = MODEL_MAP_ENV) -> dict[str, str]:
    """``{id: folder}`` from ``ID=FOLDER`` entries (a list, or one string of entries separated by ``;``);
    ValueError naming ``name`` for an entry without ``=``, an empty side, or a folder that does not exist.
    Folders are made absolute (a chapter kernel runs in another working folder)."""
    items = [e for e in (entries.split(";") if isinstance(entries, str) else entries) if e.strip()]
    out: dict[str, str] = {}
    for entry in items:
        key, sep, folder = entry.partition("=")
        key, folder = key.strip(), folder.strip()
        if not sep or not key or not folder:
            raise ValueError(
                f"{name}: each entry must be ID=FOLDER (e.g. google/ddpm-ema-celebahq-256=/data/celebahq), "
                f"got {entry!r}"
            )
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ValueError(f"{name}: {key}={folder}: no such folder")
        out[key] = str(path.resolve())
    return out


def format_model_map(mapping: dict[str, str]) -> str:
    """The ``$PULLBACK_MODEL_MAP`` string of ``mapping`` (the inverse of :func:`parse_model_map`)."""
    return ";".join(f"{k}={v}" for k, v in mapping.items())


def model_map() -> dict[str, str]:
    """The model map of this process: ``{model reference: folder}`` from ``$PULLBACK_MODEL_MAP`` (empty when
    unset). It points a hub id (or any model name a chapter is given) at a local folder without editing a
    parameter file, e.g. the paper's hub ids at random-weight replicas (:mod:`pullback_utils.zoo.replicas`)."""
    return parse_model_map(os.environ.get(MODEL_MAP_ENV, ""))


def resolve_model_reference(value: str) -> str:
    """The folder the model map gives for ``value``, else ``value`` itself (the one place the map is read)."""
    return model_map().get(value, value) if isinstance(value, str) else value
