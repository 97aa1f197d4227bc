"""The bundled model zoo: small diffusion models trained by the project, offline.

Which module to open:

- the catalogue and bundled folders: :mod:`~pullback_utils.zoo.registry` (``paths``: where things live);
- the data: ``vocab`` (shared words and ranges), ``render`` (differentiable primitives), ``datasets``,
  ``ladder`` (the dataset-complexity ladder), ``captions``, ``text_encoder``;
- training: ``unet`` (architecture and noise schedule), ``recipe`` (learning rate, loss weights),
  ``train`` (the loop), ``checkpoint`` (resumable state), ``records`` (``zoo.json``, run records),
  ``parallel`` (several models side by side);
- model cards: ``evaluate`` and ``fitting`` (what is measured), ``card_text`` and ``card_index``
  (the markdown), ``cards`` (writes a card);
- the command line: ``python -m pullback_utils.zoo {train,card,ladder,index}`` (:mod:`~pullback_utils.zoo.__main__`).
"""

from pullback_utils.zoo.registry import available_models, model_dir, model_info

__all__ = [
    # the catalogue and the bundled folders (the rest: one module a job, listed above)
    "available_models",
    "model_dir",
    "model_info",
]
