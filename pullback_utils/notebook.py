"""Parameter checking for the book's papermill notebooks.

Each chapter has one code cell tagged ``parameters`` holding literal assignments with a comment each.
Papermill inserts an ``injected-parameters`` cell right after it, and silently accepts any name
(``-p lenght 3`` just defines a new variable) and any type. The first cell after the injection
calls :func:`check_parameters`, which stops the run there, before any heavy compute, when a name is
unknown or a value has the wrong type. The message names the parameter and lists the valid ones.

The check reads the two cells' sources from IPython's input history (``In``). It parses them with
:mod:`ast` and evaluates nothing. The book runner calls :func:`validate_overrides` on the same rules
before it starts a kernel.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["ParameterError", "parse_assignments", "validate_overrides", "check_parameters"]

INJECTED_MARKER = "# Parameters"


class ParameterError(ValueError):
    """A notebook parameter is unknown or has the wrong type."""


def parse_assignments(source: str) -> dict[str, Any]:
    """Literal assignments ``name = <literal>`` of a cell, in order; other statements are ignored."""
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = _Unparsed(ast.unparse(node.value))
    return values


class _Unparsed:
    def __init__(self, text: str) -> None:
        self.text = text


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def validate_overrides(defaults: dict[str, Any], overrides: dict[str, Any], notebook: str = "notebook") -> None:
    """Raise :class:`ParameterError` if ``overrides`` has an unknown name or a wrongly typed value.

    ``defaults``: the parameters cell's values; ``overrides``: what papermill (or the runner) sets.
    Ints are accepted where the default is a float; None is accepted anywhere and for None defaults.
    """
    valid = ", ".join(f"{k} ({type(v).__name__})" for k, v in defaults.items())
    for name, value in overrides.items():
        if name not in defaults:
            raise ParameterError(f"{notebook}: unknown parameter {name!r}; valid parameters: {valid}")
        if isinstance(value, _Unparsed):
            raise ParameterError(f"{notebook}: parameter {name!r} must be a literal, got {value.text}")
        if not _type_ok(defaults[name], value):
            raise ParameterError(
                f"{notebook}: parameter {name!r} must be {type(defaults[name]).__name__} "
                f"(default {defaults[name]!r}), got {type(value).__name__} {value!r}"
            )


def check_parameters(history: list[str] | None = None) -> dict[str, Any]:
    """Check papermill's injected parameters against the parameters cell; return the parameters.

    Call it in the first cell after the parameters cell. ``history`` is the list of executed cell
    sources (default: IPython's ``In``). Returns {name: value} of the parameters in effect, i.e. the
    defaults updated with the injected values. Raises :class:`ParameterError` on a bad parameter.
    """
    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython always present with jupyter
            return {}
        shell = get_ipython()
        if shell is None:
            return {}
        history = list(shell.user_ns.get("In", []))
    # the current cell is the last entry; the injected cell (if any) and the parameters cell precede it
    previous = [src for src in history[:-1] if src and src.strip()]
    if not previous:
        return {}
    if previous[-1].lstrip().startswith(INJECTED_MARKER) and len(previous) >= 2:
        injected, params_src = previous[-1], previous[-2]
    else:
        injected, params_src = "", previous[-1]
    defaults = parse_assignments(params_src)
    overrides = parse_assignments(injected) if injected else {}
    validate_overrides(defaults, overrides)
    return {**defaults, **overrides}
