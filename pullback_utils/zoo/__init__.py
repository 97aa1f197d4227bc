"""The bundled model zoo: small diffusion models trained by the project, offline.

See :mod:`pullback_utils.zoo.registry` for lookup of the bundled models.
"""
