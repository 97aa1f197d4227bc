"""``python -m pullback_utils.book``: see :mod:`pullback_utils.book.cli`."""

import sys

from pullback_utils.book.cli import main

sys.exit(main())
