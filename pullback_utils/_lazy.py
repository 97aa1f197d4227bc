"""Lazy submodules and names for the package's folders (PEP 562): ``pu.engine.solvers`` and
``pu.engine.jacobian_svd`` import on first use."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Callable


def submodules(
    package: str, exports: Mapping[str, Sequence[str]] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps a submodule's name to the names the package exports from it (its ``__all__``, grouped);
    an exported name imports its submodule on first use, and any other attribute that names a submodule
    imports that submodule.
    """
    where = {name: module for module, names in (exports or {}).items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
            setattr(importlib.import_module(package), name, value)
            return value
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        import pkgutil
        import sys

        mod: ModuleType = sys.modules[package]
        return sorted(set(vars(mod)) | set(where) | {m.name for m in pkgutil.iter_modules(mod.__path__)})

    return __getattr__, __dir__
