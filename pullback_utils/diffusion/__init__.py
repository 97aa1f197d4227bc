"""Diffusion models' time and parts: ``schedule`` (the one time convention), ``ddim``, ``flow`` (flow
matching), ``vae``, ``images`` (in/out), ``prompts`` (prompts -> encoder states), ``architectures``
(the table of supported denoisers), ``weights`` (digests).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # schedule: time: what t means, the DDIM grid
    "schedule": [
        "Time",
        "DEFAULT_NUM_TRAIN_TIMESTEPS",
        "resolve_time",
        "unet_timestep",
        "check_times",
        "check_steps",
        "grid",
        "leg_steps",
        "legs",
        "TimeGrid",
    ],
    # ddim: DDIM sampling and inversion
    "ddim": [
        "Prompt",
        "Denoiser",
        "DDIMTrajectory",
        "ddim_timesteps",
        "ddim_sample",
        "ddim_invert",
        "ddim_sample_to_times",
        "ddim_invert_to_times",
    ],
    # flow: flow matching (velocity <-> eps, the time grid)
    "flow": [
        "FlowGrid",
        "is_flow_scheduler",
        "calculate_shift",
        "velocity_to_eps",
        "velocity_to_x0",
    ],
    # architectures: the table of supported denoisers
    "architectures": [
        "SUPPORTED_DENOISERS",
        "Family",
        "family_of",
        "check_conditioning",
        "check_input",
        "network_timestep",
        "expand_conditioning",
        "pack_latents",
        "unpack_latents",
        "latent_image_ids",
    ],
    # denoiser: calling a denoiser family by family
    "denoiser": [
        "keywords",
        "flux_extras",
        "output",
        "to_prediction",
    ],
    # prompts: prompts -> encoder states
    "prompts": [
        "Conditioning",
        "expand_batch",
        "encode_prompt",
        "resolve",
        "short",
        "encode",
        "unconditional",
        "PromptTruncatedWarning",
    ],
    # vae: the VAE of latent models
    "vae": [
        "config_get",
        "decode",
    ],
    # images: images in and out
    "images": [
        "load_image",
        "resize_center_crop",
        "to_pil",
        "save_grid",
        "make_grid",
        "check_image_range",
        "IMAGE_RANGE_TOL",
        "SAMPLE_RANGE_TOL",
    ],
    # finite: refusing non-finite or out-of-scale states
    "finite": [
        "NonFiniteError",
        "MAX_GUIDANCE_SCALE",
        "STATE_SCALE",
        "MAX_STATE_ABS",
        "check_state_scale",
        "refuse_non_finite",
        "scale_causes",
    ],
    # weights: weight digests
    "weights": [
        "CorruptWeightsError",
        "DIGEST_FILE",
        "check_weights",
        "file_sha256",
        "read_weights_digest",
        "weight_files",
        "write_weights_digest",
    ],
    # model_map: hub ids pointed at local folders
    "model_map": [
        "MODEL_MAP_ENV",
        "model_map",
        "parse_model_map",
        "format_model_map",
        "resolve_model_reference",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
