"""Parameter checking for the book's papermill notebooks.

Each chapter has one code cell tagged ``parameters`` holding literal assignments with a comment each,
preferably annotated so that ``papermill --help-notebook`` shows the types::

    k: int = 8  # basis size
    tol: float = 0.01  # solver tolerance (rad)
    max_iters: Optional[int] = None  # iteration cap (None: the solver's default, 50 Krylov blocks)

(papermill reads the type only from an annotation or a ``# type:`` comment, never from the literal,
and its pattern allows letters, digits, ``_``, ``[]`` and ``,`` in an annotation: write
``Optional[int]``, not ``int | None``, and import ``Optional`` in an earlier cell.)

Papermill inserts an ``injected-parameters`` cell right after it, and silently accepts any name
(``-p lenght 3`` just defines a new variable) and any type. The first cell after the injection
calls :func:`check_parameters`, which stops the run there, before any heavy compute, when a name is
unknown or a value has the wrong type. The message names the parameter and lists the valid ones; in a
notebook it is shown as one line, without a traceback.

The check reads the cells' sources from IPython's input history (``In``). It parses them with
:mod:`ast` and evaluates nothing. The book runner calls :func:`validate_overrides` on the same rules
before it starts a kernel. This module imports only the standard library (it runs in every chapter).
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import tokenize
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "ParameterError",
    "Parameter",
    "parse_parameters",
    "parse_assignments",
    "validate_overrides",
    "check_parameters",
    "BOOK_ENV",
    "in_book_run",
]

_INJECTED_MARKER = "# Parameters"
#: Set to "1" by the book runner for the chapters' kernels (figures are then shown as the book numbers them).
BOOK_ENV = "PULLBACK_BOOK_BUILD"
_PLAIN = (type(None), bool, int, float, str)


def in_book_run() -> bool:
    """Whether this kernel was started by the book runner (``python -m pullback_utils.book``)."""
    return os.environ.get(BOOK_ENV) == "1"


class ParameterError(ValueError):
    """A notebook parameter is unknown or has the wrong type."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: the message is the whole story."""
        return [f"ParameterError: {self}"]


@dataclass(frozen=True)
class Parameter:
    """One assignment of a parameters cell.

    ``default``: the literal value (None when ``literal`` is False); ``source``: the assigned
    expression as written; ``annotation``: the annotation's source text, if any; ``help``: the
    comment at the end of the line.
    """

    name: str
    default: Any
    literal: bool = True
    source: str = ""
    annotation: str | None = None
    help: str = ""

    def _kinds(self) -> tuple[frozenset[str], frozenset[str] | None] | None:
        """(accepted kinds, accepted list item kinds or None), or None when anything goes."""
        if self.annotation:
            parsed = _annotation_kinds(self.annotation)
            if parsed is not None:
                return parsed
        if not self.literal or self.default is None:
            return None
        kind = _kind_of(self.default)
        if kind is None:
            return None
        items = None
        if kind == "list" and self.default:
            item_kinds = {_kind_of(v) for v in self.default}
            if len(item_kinds) == 1 and None not in item_kinds:
                items = frozenset(item_kinds)
            elif item_kinds == {"int", "float"}:
                items = frozenset({"float"})
        return frozenset({kind}), items

    def expected(self) -> str:
        """What the parameter accepts, in words: ``int``, ``float or None``, ``list of str``, ``any``."""
        kinds = self._kinds()
        if kinds is None:
            return "any"
        main, items = kinds
        words = []
        for k in sorted(main, key=_KIND_ORDER.index):
            words.append(f"list of {' or '.join(sorted(items, key=_KIND_ORDER.index))}" if k == "list" and items else k)
        return " or ".join(words)

    def accepts(self, value: Any) -> bool:
        kinds = self._kinds()
        if kinds is None:
            return True
        main, items = kinds
        if not any(_is_kind(value, k) for k in main):
            return False
        if items is not None and isinstance(value, (list, tuple)):
            return all(any(_is_kind(v, k) for k in items) for v in value)
        return True


_KIND_ORDER = ["bool", "int", "float", "str", "list", "dict", "None"]
_NAMES = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list": "list",
    "List": "list",
    "tuple": "list",
    "Tuple": "list",
    "Sequence": "list",
    "dict": "dict",
    "Dict": "dict",
    "None": "None",
    "NoneType": "None",
}


def _kind_of(value: Any) -> str | None:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    for kind, types in (("int", int), ("float", float), ("str", str), ("list", (list, tuple)), ("dict", dict)):
        if isinstance(value, types):
            return kind
    return None


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float))
    if kind == "dict":  # a JSON-ready mapping: names as keys
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    return isinstance(value, {"str": str, "list": (list, tuple)}[kind])


def _annotation_kinds(text: str) -> tuple[frozenset[str], frozenset[str] | None] | None:
    """Kinds of an annotation such as ``int``, ``Optional[float]``, ``list[str]``, ``int | None``; None
    for anything else (an unknown class accepts any value)."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        return _annotation_kinds(node.value)
    kinds: set[str] = set()
    items: set[str] | None = None

    def walk(n: ast.AST) -> bool:
        nonlocal items
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
            return walk(n.left) and walk(n.right)
        if isinstance(n, ast.Constant) and n.value is None:
            kinds.add("None")
            return True
        if isinstance(n, (ast.Name, ast.Attribute)):
            name = n.id if isinstance(n, ast.Name) else n.attr
            if name in _NAMES:
                kinds.add(_NAMES[name])
                return True
            return False
        if isinstance(n, ast.Subscript):
            outer = n.value.id if isinstance(n.value, ast.Name) else getattr(n.value, "attr", "")
            args = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            if outer in ("Optional", "Union"):
                if outer == "Optional":
                    kinds.add("None")
                return all(walk(a) for a in args)
            if _NAMES.get(outer) == "list":
                kinds.add("list")
                inner = _annotation_kinds(ast.unparse(args[0]))
                if (
                    inner is not None
                    and inner[1] is None
                    and not (outer in ("tuple", "Tuple") and len(args) > 1 and ast.unparse(args[1]) != "...")
                ):
                    items = set(inner[0])
                return True
            if _NAMES.get(outer) == "dict":
                kinds.add("dict")
                return True
        return False

    if not walk(node):
        return None
    return frozenset(kinds), (frozenset(items) if items else None)


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def parse_parameters(source: str) -> dict[str, Parameter]:
    """The assignments ``name = value`` and ``name: annotation = value`` of a cell, in order.

    Other statements are ignored; a value that is not a Python literal gives ``literal=False``.
    """
    comments = _comments(source)
    out: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, annotation = node.target.id, node.value, ast.unparse(node.annotation)
        else:
            continue
        help_text = comments.get(node.end_lineno or node.lineno, "")
        try:
            out[name] = Parameter(name, ast.literal_eval(value), True, ast.unparse(value), annotation, help_text)
        except (ValueError, SyntaxError, TypeError):
            out[name] = Parameter(name, None, False, ast.unparse(value), annotation, help_text)
    return out


def parse_assignments(source: str) -> dict[str, Any]:
    """Literal assignments ``name = <literal>`` of a cell, in order; other statements are ignored.

    A value that is not a literal is returned as an ``_Unparsed`` holder of its source text.
    """
    return {n: p.default if p.literal else _Unparsed(p.source) for n, p in parse_parameters(source).items()}


class _Unparsed:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _as_parameters(defaults: Mapping[str, Any]) -> dict[str, Parameter]:
    out = {}
    for name, value in defaults.items():
        if isinstance(value, Parameter):
            out[name] = value
        elif isinstance(value, _Unparsed):
            out[name] = Parameter(name, None, False, value.text)
        else:
            out[name] = Parameter(name, value)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77].rsplit(" ", 1)[0] + " ..."


def validate_overrides(defaults: Mapping[str, Any], overrides: Mapping[str, Any], notebook: str = "notebook") -> None:
    """Raise :class:`ParameterError` if ``overrides`` has an unknown name or a wrongly typed value.

    ``defaults``: the parameters cell, as {name: :class:`Parameter`} or {name: default value};
    ``overrides``: what papermill (or the runner) sets. Ints are accepted where a float is expected;
    None only where the default is None or the annotation allows it (``Optional[int]``).
    The message is one line: the notebook, the parameter, its value and what would be valid.
    """
    params = _as_parameters(defaults)
    for name, value in overrides.items():
        if name not in params:
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(f"{p.name} ({p.expected()})" for p in params.values())
            raise ParameterError(
                f"{notebook}: unknown parameter {name!r} (value {_short(value)}){hint}; valid parameters: {valid}"
            )
        if isinstance(value, _Unparsed):
            raise ParameterError(f"{notebook}: parameter {name!r} must be a literal, got {value.text}")
        param = params[name]
        if not param.accepts(value):
            hint = ""
            if isinstance(value, str) and "float" in param.expected():
                try:
                    float(value)
                    hint = " (YAML 1.1 reads an unquoted 1e-3 as a string: write 1.0e-3 or 0.001)"
                except ValueError:
                    pass
            default = f"default {param.default!r}" if param.literal else f"default {param.source}"
            raise ParameterError(
                f"{notebook}: parameter {name!r} must be {param.expected()} ({default}), "
                f"got {'None' if value is None else type(value).__name__ + ' ' + _short(value)}{hint}"
            )


def _is_parameters_cell(source: str) -> bool:
    """Only assignments (and imports), at least one of a literal, and no call of check_parameters."""
    if "check_parameters" in source or source.lstrip().startswith(_INJECTED_MARKER):
        return False
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    allowed = (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)
    if not body or not all(
        isinstance(n, allowed) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body
    ):
        return False
    return any(p.literal for p in parse_parameters(source).values())


_NOT_PLAIN = object()


def _plain(value: Any) -> Any:
    """JSON-ready copy of a value (None, bool, int, float, str, lists and str-keyed dicts of them), or
    ``_NOT_PLAIN``."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _plain(v) for k, v in value.items()}
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items.values()) else items
    return _NOT_PLAIN


def check_parameters(history: list[str] | None = None, namespace: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check papermill's injected parameters against the parameters cell; return the parameters.

    Call it in the first cell after the parameters cell. ``history`` is the list of executed cell
    sources, the current cell last (default: IPython's ``In``); ``namespace`` the variables (default:
    the IPython user namespace). The parameters cell is the latest earlier cell made only of
    assignments (so re-running cells in Jupyter, in any order, finds it again); an injected cell
    (``# Parameters``) right after it overrides its values.

    Returns {name: value} of the parameters in effect, as plain JSON-ready values: literals as
    written, a non-literal default as its value in ``namespace`` when that is plain, else its source
    text. Raises :class:`ParameterError` on a bad parameter, or when no parameters cell was run.
    Outside IPython (no history given) returns {}.
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
        namespace = shell.user_ns if namespace is None else namespace
    previous = [src for src in history[:-1] if src and src.strip()]
    if not previous:
        return {}
    injected = ""
    if previous[-1].lstrip().startswith(_INJECTED_MARKER):
        injected, previous = previous[-1], previous[:-1]
    params_src = next((src for src in reversed(previous) if _is_parameters_cell(src)), None)
    if params_src is None:
        raise ParameterError(
            "check_parameters(): no parameters cell was run before this cell; run the cell "
            "tagged 'parameters' (and the injected-parameters cell after it, if any) first"
        )
    params = parse_parameters(params_src)
    overrides = parse_assignments(injected) if injected else {}
    validate_overrides(params, overrides)
    values: dict[str, Any] = {}
    for name, p in params.items():
        if p.literal:
            values[name] = p.default
        else:
            current = _plain(namespace[name]) if namespace is not None and name in namespace else _NOT_PLAIN
            values[name] = p.source if current is _NOT_PLAIN else current
    values.update({name: _plain(value) for name, value in overrides.items()})
    return values
