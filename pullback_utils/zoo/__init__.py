"""The bundled model zoo: small diffusion models trained by the project, offline.

See :mod:`pullback_utils.zoo.registry` for lookup of the bundled models.
"""

from pullback_utils.zoo.registry import available_models, model_dir, model_info  # noqa: E402,F401
