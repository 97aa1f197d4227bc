"""Where the zoo keeps things on disk: a leaf module (imports nothing of the package).

- :data:`REPO_ROOT`: the repository (or source tree) that holds the package;
- :data:`DEFAULT_CACHE`: resumable training states, ``.cache/zoo-train/<name>/state.pt`` (git-ignored);
- :data:`CARDS_DIR`: the book's model cards, ``book/model_cards/`` (ladder cards in
  ``book/model_cards/ladder/``, :data:`LADDER_CARDS`).

The bundled weights live in :data:`pullback_utils.zoo.registry.WEIGHTS_DIR`.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "zoo-train"
CARDS_DIR = REPO_ROOT / "book" / "model_cards"
#: Sub-folder of a cards folder that holds the ladder's compact cards.
LADDER_CARDS = "ladder"
