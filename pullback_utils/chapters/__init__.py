"""What every chapter does first and last: ``chapter`` (set-up, metrics), ``parameters`` (the papermill
parameters cell), ``measurements`` (what chapters measure), ``figures`` (captioned figures),
``plotting`` (the book's style), ``units`` (the units behind a claim), ``tables``, ``scorecard`` (the claims'
verdicts over all chapters).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
