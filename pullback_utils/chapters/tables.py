"""Markdown tables for the chapters (rendered by ``IPython.display.Markdown``; no pandas needed).

``markdown_table({"row": {"column": value, ...}, ...})`` -> a GitHub/MyST pipe table whose first column
holds the row names; floats are printed with ``precision`` decimals (``"g"`` format under 1e-3 or
over 1e6), ``|`` and newlines in cells are escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pullback_utils._validate import is_int

__all__ = ["markdown_table"]


def _cell(value: Any, precision: int) -> str:
    if isinstance(value, float):
        text = f"{value:.{precision}g}" if value != 0 and not 1e-3 <= abs(value) < 1e6 else f"{value:.{precision}f}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None, index: str = "", precision: int = 2
) -> str:
    """rows: {row name: {column: value}} -> a pipe table; columns default to the first row's keys.

    A column a row lacks is left empty. ``index`` is the header of the row-name column.
    """
    if not is_int(precision) or precision < 0:
        raise ValueError(f"precision must be a non-negative int, got {precision!r}")
    if not rows:
        raise ValueError("rows is empty: a table needs at least one row")
    cols = list(columns) if columns is not None else list(next(iter(rows.values())).keys())
    lines = [
        "| " + " | ".join([_cell(index, precision)] + [_cell(c, precision) for c in cols]) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for name, row in rows.items():
        cells = [_cell(row[c], precision) if c in row else "" for c in cols]
        lines.append("| " + " | ".join([_cell(name, precision)] + cells) + " |")
    return "\n".join(lines)
