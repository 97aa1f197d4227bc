"""``python -m pullback_utils.book``: see :mod:`pullback_utils.book.cli`."""

import sys

from .cli import main

sys.exit(main())
