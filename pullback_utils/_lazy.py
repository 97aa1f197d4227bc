"""Lazy submodules for the package's folders (PEP 562): ``pu.engine.solvers`` imports on first use."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Callable


def submodules(package: str) -> tuple[Callable[[str], ModuleType], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: an unknown attribute that names a submodule imports it."""

    def __getattr__(name: str) -> Any:
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        import pkgutil
        import sys

        mod = sys.modules[package]
        return sorted(set(vars(mod)) | {m.name for m in pkgutil.iter_modules(mod.__path__)})

    return __getattr__, __dir__
