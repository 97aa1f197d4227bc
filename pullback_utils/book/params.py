"""Chapter parameters for the runner: the notebooks' parameters cells, YAML groups, ``-p`` values.

Parameters, later sources winning: the notebook's own defaults; with ``--quick`` the ``all:`` and
``<name>:`` groups of ``book/params/quick.yaml``; the same groups of ``--params FILE``; then the
command line's ``-p NAME VALUE`` pairs (an ``all`` group of their own). Every override is checked against
the notebook's parameters cell (:func:`pullback_utils.chapters.parameters.validate_overrides`) before any kernel
starts. Reading a parameters cell needs neither papermill nor a kernel: the notebook is JSON and the
cell is parsed with :mod:`ast`, so a bad parameter is reported at once.

YAML values are read with YAML 1.2's float syntax: an unquoted ``1e-3`` is the float 0.001 (YAML 1.1,
PyYAML's default, reads it as a string).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from pullback_utils.chapters.parameters import Parameter, ParameterError, parse_parameters, validate_overrides

__all__ = [
    "parse_cli_pairs",
    "load_param_groups",
    "notebook_parameters",
    "notebook_defaults",
    "notebook_metadata",
    "effective_overrides",
    "papermill_cell_problems",
]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-3``, ``2E5``, ``1.``) besides YAML 1.1's."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_Loader` (YAML 1.2 floats)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _parse_value(text: str) -> Any:
    """A command-line value as a YAML literal: ``3`` int, ``1e-3`` float, ``null`` None, ``[0.7, 0.3]``
    list, ``true`` bool; anything else (``disks``, ``a red circle``) the string itself."""
    try:
        return _load_yaml(text)
    except yaml.YAMLError:
        return text


def parse_cli_pairs(pairs: Iterable[Iterable[str]] | None) -> dict[str, Any]:
    """``[["k", "4"], ["times", "[0.7, 0.3]"]]`` (from ``-p NAME VALUE`` options) -> {name: value}."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, text = list(pair)
        if not name.isidentifier():
            raise ParameterError(f"-p {name} {text}: {name!r} is not a parameter name")
        out[name] = _parse_value(text)
    return out


def load_param_groups(path: Path | str | None) -> dict[str, dict[str, Any]]:
    """Read a YAML file of parameter groups ``{notebook_name | "all": {param: value}}``."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: parameter file not found")
    try:
        data = _load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise ParameterError(
            f"{path}: expected groups of parameters, e.g. 'coarse_to_fine: {{n_samples: 100}}' or 'all: {{...}}'"
        )
    return {str(k): dict(v or {}) for k, v in data.items()}


def _read_notebook(path: Path | str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{path}: cannot read the notebook ({exc})") from None


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def notebook_parameters(path: Path | str) -> dict[str, Parameter]:
    """The parameters cell (the code cell tagged ``parameters``) of a notebook, parsed; {} when it has none."""
    for cell in _read_notebook(path).get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                return parse_parameters(_source(cell))
            except SyntaxError as exc:
                raise ParameterError(
                    f"{path}: the parameters cell is not valid Python: {exc.msg} (line {exc.lineno})"
                ) from None
    return {}


def notebook_defaults(path: Path | str) -> dict[str, Any]:
    """The parameters cell's names and default values (None for a default that is not a literal)."""
    return {name: p.default for name, p in notebook_parameters(path).items()}


def notebook_metadata(path: Path | str) -> dict[str, Any]:
    """The notebook's ``pullback_book`` metadata, e.g. ``{"depends_on": ["coarse_to_fine"]}``."""
    meta = _read_notebook(path).get("metadata", {}).get("pullback_book", {})
    return meta if isinstance(meta, dict) else {}


def effective_overrides(
    name: str, defaults: Mapping[str, Any], groups: Iterable[Mapping[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """Merge the ``all`` and ``name`` groups of each parameter source in turn (later ones win).

    ``defaults``: {name: :class:`Parameter` or default value}. An ``all`` value only applies to
    notebooks that declare that parameter; a ``name`` value must be a declared parameter of the right
    type (:class:`ParameterError` otherwise).
    """
    merged: dict[str, Any] = {}
    for group in groups:
        merged.update({k: v for k, v in group.get("all", {}).items() if k in defaults})
        merged.update(group.get(name, {}))
    validate_overrides(defaults, merged, notebook=f"{name}.ipynb")
    return merged


def papermill_cell_problems(path: Path | str) -> list[str]:
    """How ``papermill --help-notebook`` misreads the notebook's parameters cell ([]: not at all).

    Papermill reads a parameter's type only from an annotation (``k: int = 8``) or a ``# type:``
    comment, never from the literal ("Unknown type" otherwise); it drops, with only a log warning, a
    line with more than one ``=`` (in the value or the comment) and a line whose annotation has
    characters other than letters, digits, ``_``, ``[]``, ``,`` and spaces (``int | None``: write
    ``Optional[int]``). The ``hide-input`` tag does not matter.
    """
    import logging

    import papermill

    ours = notebook_parameters(path)
    logger = logging.getLogger("papermill")
    level, logger.level = logger.level, logging.ERROR
    try:
        theirs = papermill.inspect_notebook(str(path))
    finally:
        logger.setLevel(level)
    problems = []
    for name, param in ours.items():
        if name not in theirs:
            problems.append(
                f"{name}: papermill cannot read this line (one '=' per line; annotations like Optional[int])"
            )
        elif theirs[name]["inferred_type_name"] in ("None", ""):
            problems.append(
                f"{name}: no type for papermill (annotate it, e.g. '{name}: "
                f"{type(param.default).__name__ if param.literal and param.default is not None else 'Optional[int]'}"
                f" = {param.source}')"
            )
        elif not theirs[name]["help"]:
            problems.append(f"{name}: no help comment")
    return problems
