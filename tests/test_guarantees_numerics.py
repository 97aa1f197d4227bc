"""What the package guarantees about numbers, images, prompts and its own outputs (issue 25).

One section per category of bad input; each test fails on the code before issue 25 and names the
fault it covers. The next round of hardening adds its cases to the matching section:

1. non-finite values: refused where they arise, naming the input that caused them;
2. editing and prompts: transport between compatible bases only, one rule for image ranges, unit
   directions, prompt truncation, the prompt memo;
3. late or cryptic errors: argument checks before the first network call, clear dtype errors;
4. the package's own outputs: its samples can be inverted, its messages name public functions, the
   int-time rule is stated where a diffusers user meets it;
5. also: storage dtypes, degenerate bases on every backend, energy fractions of orthonormal bases only.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_helpers import FakeTextEncoder, tiny_scheduler
from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition

import pullback_utils as pu
from pullback_utils import editing as E
from pullback_utils.analysis import inference
from pullback_utils.diffusion.ddim import ddim_invert, ddim_sample
from pullback_utils.diffusion.finite import NonFiniteError
from pullback_utils.engine.solvers import LocalBasis
from pullback_utils.models.diffusion_model import DiffusionModel
from pullback_utils.sweeps import bases as sweeps

FAST = dict(tol=5e-2)  # loose solver tolerance: these tests check guarantees, not the solver


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pixel():
    return DiffusionModel(make_tiny_unet2d(), tiny_scheduler("ddpm"), name="tiny-pixel")


@pytest.fixture(scope="module")
def pixel_other():
    """The same architecture with other weights (another model)."""
    return DiffusionModel(make_tiny_unet2d(seed=1), tiny_scheduler("ddpm"), name="tiny-pixel-other")


@pytest.fixture
def text():
    unet = make_tiny_unet2d_condition(cross_attention_dim=24)
    return DiffusionModel(
        unet, tiny_scheduler("ddpm"), name="tiny-text", text_encoder=FakeTextEncoder(24), conditional=True
    )


def _forbid_compute(monkeypatch, *models):
    """Every network evaluation of ``models`` fails: a check that passes must have run before it."""

    def boom(*a, **k):
        raise AssertionError("heavy compute started before the input was checked")

    for m in models:
        for name in ("eps", "predict", "local_basis"):
            monkeypatch.setattr(m, name, boom)


class NaNBelow(torch.nn.Module):
    """A plain eps-network, ``(x, timestep) -> eps``: 0.1 x above timestep ``at``, NaN from it down."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.register_buffer("one", torch.ones(()))

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        out = 0.1 * x * self.one
        return out * float("nan") if int(timestep.reshape(-1)[0]) < self.at else out


def _nan_model(at: int = 500) -> DiffusionModel:
    return DiffusionModel(
        NaNBelow(at), tiny_scheduler("ddim"), sample_shape=(3, 4, 4), conditional=False, name="nan-below"
    )


# ================================================================================ 1. non-finite values
def test_nan_prompt_embeddings_are_refused_before_compute(text, monkeypatch):
    _forbid_compute(monkeypatch, text)
    bad = torch.zeros(1, 6, 24)
    bad[0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"prompt \(encoder hidden states\) contains NaN or infinite values"):
        ddim_sample(text, text.noise(1), 1000, 0, steps=2, prompt=bad)
    with pytest.raises(ValueError, match="prompt contains NaN"):
        text.conditioning({"encoder_hidden_states": bad})


def test_nan_from_the_text_encoder_is_refused(text):
    text.text_encoder.table[ord("a")] = float("inf")
    with pytest.raises(ValueError, match=r"the encoding of prompt 'a cat' contains NaN or infinite values"):
        text.encode_prompt("a cat")


def test_absurd_guidance_scale_is_refused_before_compute(text, monkeypatch):
    _forbid_compute(monkeypatch, text)
    with pytest.raises(ValueError, match=r"guidance_scale=1e\+30 is outside \[-1000, 1000\]"):
        ddim_sample(text, text.noise(1), 1000, 0, steps=2, prompt="a cat", guidance_scale=1e30)
    text.conditioning("a cat", guidance_scale=7.5)  # the usual values pass


def test_a_huge_x_T_is_refused_before_compute(pixel, monkeypatch):
    _forbid_compute(monkeypatch, pixel)
    with pytest.raises(ValueError, match=r"x has values up to \|[0-9.]+e\+20\|, beyond 10000"):
        ddim_sample(pixel, pixel.noise(1) * 1e20, 1000, 0, steps=2)
    with pytest.raises(ValueError, match=r"x0 has values up to"):
        ddim_invert(
            pixel.__class__(
                NaNBelow(0), tiny_scheduler("ddim"), sample_shape=(3, 4, 4), conditional=False, checks_image_range=False
            ),
            torch.full((1, 3, 4, 4), 1e20),
            10,
            steps=1,
        )


def test_non_finite_sampling_is_refused_at_the_step_where_it_arises():
    m = _nan_model(at=500)
    with pytest.raises(
        NonFiniteError,
        match=r"ddim_sample \(step level 400 -> 200\) produced 48 NaN.*no input is "
        r"out of scale",
    ):
        ddim_sample(m, m.noise(1), 1000, 0, steps=5)
    with pytest.raises(NonFiniteError, match=r"ddim_sample .* caused by x \(largest \|value\| 5"):
        ddim_sample(m, torch.full((1, 3, 4, 4), 500.0), 1000, 0, steps=5)


def test_non_finite_inversion_is_refused_naming_the_step():
    m = DiffusionModel(NaNBelow(2000), tiny_scheduler("ddim"), sample_shape=(3, 4, 4), conditional=False, name="nan")
    with pytest.raises(NonFiniteError, match=r"ddim_invert \(step level 0 -> 500\) produced"):
        ddim_invert(m, torch.zeros(1, 3, 4, 4), 1000, steps=2)


def test_edit_with_gamma_1e30_is_refused_naming_gamma(pixel):
    d = torch.randn(pixel.sample_shape, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteError, match=r"xspace_guidance \(step 2 of 3\) produced .* caused by gamma=1e\+30"):
        E.edit_image(pixel, None, t_edit=500, gamma=1e30, n_steps=3, frames=2, direction=d, sampling_steps=2)


def test_save_grid_refuses_nan_images_instead_of_writing_black(tmp_path):
    from pullback_utils.diffusion.images import save_grid

    x = torch.zeros(3, 3, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"images \[1\] contain NaN or infinite values"):
        save_grid(x, tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()
    save_grid(torch.zeros(3, 3, 4, 4), tmp_path / "ok.png")  # finite images are written


# ================================================================================ 2. editing and prompts
def _info_basis(**info) -> LocalBasis:
    g = torch.Generator().manual_seed(0)
    v = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=torch.float64))[0].T.float().reshape(3, 1, 6)
    u = torch.linalg.qr(torch.randn(5, 3, generator=g, dtype=torch.float64))[0].T.float().reshape(3, 1, 5)
    return LocalBasis(v=v, u=u, s=torch.ones(3), info=dict(info))


@pytest.mark.parametrize(
    "field, a, b, what",
    [
        ("level", 500, 600, "time"),
        ("layer", "mid", "up.0", "layer"),
        ("denoiser", "0123abcd", "ffff0000", "model"),
    ],
)
def test_parallel_transport_refuses_bases_of_different_feature_maps(field, a, b, what):
    same = {"level": 500, "layer": "mid", "denoiser": "0123abcd"}
    b0, b1 = _info_basis(**{**same, field: a}), _info_basis(**{**same, field: b})
    with pytest.raises(ValueError, match=rf"their {what}.* differ: basis_from.info\['{field}'\]"):
        E.parallel_transport(b0, b1, 0)
    E.parallel_transport(b0, _info_basis(**{**same, field: a}), 0)  # one feature map: transported


def test_parallel_transport_refuses_a_basis_without_the_metadata_the_other_has():
    with pytest.raises(ValueError, match=r"only basis_to records info\['denoiser'\]"):
        E.parallel_transport(_info_basis(level=5, layer="mid"), _info_basis(level=5, layer="mid", denoiser="ab"), 0)


def test_parallel_transport_refuses_bases_of_two_models(pixel, pixel_other):
    x = pixel.noise(1, seed=2)
    b0 = pixel.local_basis(x, 500, 2, **FAST)
    b1 = pixel_other.local_basis(x, 500, 2, **FAST)
    assert b0.info["denoiser"] == pu.features.basis.denoiser_signature(pixel.unet) != b1.info["denoiser"]
    with pytest.raises(ValueError, match=r"model \(denoiser weights\) differ"):
        E.parallel_transport(b0, b1, 0)


def test_image_range_is_one_rule_for_arrays_and_tensors(pixel, monkeypatch):
    """Float pixel values: a tensor is model range; a float array (ambiguous) is refused, not rescaled."""
    _forbid_compute(monkeypatch, pixel)
    a01 = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"a float numpy array is ambiguous .*torch.from_numpy.*load_image"):
        E.edit_image(pixel, a01, t_edit=500)
    t01 = torch.from_numpy(a01).permute(2, 0, 1)[None]
    with pytest.warns(UserWarning, match=r"every value lies in \[0, 1\].*pass 2 \* image - 1"):
        with pytest.raises(AssertionError, match="heavy compute started"):  # accepted as model range
            E.edit_image(pixel, t01, t_edit=500)


def test_a_given_direction_is_normalised_to_the_documented_unit_vector(pixel):
    d = torch.randn(pixel.sample_shape, generator=torch.Generator().manual_seed(1))
    kw = dict(t_edit=300, gamma=0.5, n_steps=1, frames=2, sampling_steps=2, seed=4)
    big = E.edit_image(pixel, None, direction=1000 * d / d.norm(), **kw)
    unit = E.edit_image(pixel, None, direction=d / d.norm(), **kw)
    assert abs(float(big.direction.norm()) - 1.0) < 1e-5
    torch.testing.assert_close(big.direction, unit.direction)
    torch.testing.assert_close(big.edited, unit.edited)
    with pytest.raises(ValueError, match="direction is the zero vector"):
        E.edit_image(pixel, None, direction=torch.zeros(pixel.sample_shape), **kw)


def test_prompts_longer_than_the_encoders_token_limit_are_warned():
    m = pu.load_model("shapes-text")  # MiniLM, 16 tokens
    short = "a red circle and a blue square on a green background next to a small yellow"
    a, b = short + " triangle above", short + " star below"
    with pytest.warns(UserWarning, match=r"reads 16 \(special tokens included\)"):
        ca = m.encode_prompt(a)
    with pytest.warns(UserWarning, match="star below"):
        cb = m.encode_prompt(b)
    torch.testing.assert_close(ca, cb)  # the same conditioning: exactly what the warning says
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.encode_prompt("a red circle")  # short prompts: no warning


def test_prompts_longer_than_clip_s_token_limit_are_warned(tmp_path):
    from diffusion_helpers import tiny_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_clip_tokenizer(tmp_path)  # 12 tokens, one per letter
    torch.manual_seed(0)
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok.get_vocab()),
            hidden_size=24,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=12,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    m = DiffusionModel(
        make_tiny_unet2d_condition(cross_attention_dim=24),
        tiny_scheduler("ddpm"),
        name="tiny-clip",
        text_encoder=te,
        tokenizer=tok,
    )
    with pytest.warns(UserWarning, match=r"has 15 tokens, but the text encoder of model 'tiny-clip' reads 12"):
        a = m.encode_prompt("abcdefghijklm")
    with pytest.warns(UserWarning, match="reads 12"):
        b = m.encode_prompt("abcdefghijxyz")
    torch.testing.assert_close(a, b)  # they differ only after the limit


def test_swapping_the_text_encoder_gives_the_new_embedding(text):
    before = text.encode_prompt("a cat")
    other = FakeTextEncoder(24)
    other.table = other.table * 2.0
    text.text_encoder = other
    torch.testing.assert_close(text.encode_prompt("a cat"), 2.0 * before)
    assert other.calls == 1


# ================================================================================ 3. late or cryptic
def test_sign_flip_exact_max_is_capped_before_enumerating():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"exact_max=40 would enumerate up to 2\^40 sign patterns; at most 20"):
        inference.sign_flip_test(np.arange(1.0, 29.0), exact_max=40)
    with pytest.raises(ValueError, match="exact_max"):
        inference.mantel_test(np.ones((4, 4)), np.ones((4, 4)), exact_max=10**12)
    assert time.perf_counter() - start < 1.0
    assert inference.sign_flip_test(np.arange(1.0, 29.0), exact_max=20).test.endswith("draws)")


@pytest.mark.parametrize(
    "basis_kwargs, error, message",
    [
        ({"tol": 1e-2, "metod": "krylov"}, TypeError, r"basis_kwargs has unknown option\(s\) \['metod'\]"),
        ({"tol": -1.0}, ValueError, r"basis_kwargs: tol must be a number in \(0, pi/2\)"),
        ({"method": "lanczos"}, ValueError, r"basis_kwargs: unknown method 'lanczos'"),
        ({"layer": "middle"}, ValueError, r"basis_kwargs: layer='middle' is not a layer of the denoiser"),
        ({"k": 3}, ValueError, r"basis_kwargs sets \['k'\], which edit_image sets itself"),
        ({"jvp_mode": "fwd"}, ValueError, r"basis_kwargs: jvp_mode must be one of"),
    ],
)
def test_basis_kwargs_are_checked_before_the_inversion(pixel, monkeypatch, basis_kwargs, error, message):
    _forbid_compute(monkeypatch, pixel)
    img = torch.full((1, *pixel.image_shape), -0.5)
    with pytest.raises(error, match=message):
        E.edit_image(pixel, img, t_edit=500, basis_kwargs=basis_kwargs)


def test_float64_input_to_the_sampler_is_a_clear_error(pixel, monkeypatch):
    _forbid_compute(monkeypatch, pixel)
    with pytest.raises(
        TypeError,
        match=r"x has dtype torch.float64 but the model computes in torch.float32; "
        r"pass x.to\(model.dtype\)",
    ):
        ddim_sample(pixel, pixel.noise(1).double(), 1000, 0, steps=2)
    with pytest.raises(TypeError, match=r"x0 has dtype torch.float64"):
        ddim_invert(pixel, torch.zeros(1, *pixel.sample_shape, dtype=torch.float64), 500, steps=2)


# ================================================================================ 4. the package's own outputs
def test_the_package_s_own_sample_can_be_inverted():
    m = pu.load_model("disks")
    x0 = ddim_sample(m, m.noise(2, seed=3), 999, 0, steps=50)
    assert float(x0.min()) < -1.05  # it overshoots [-1, 1] beyond the old tolerance (-1.078 measured)
    x_T = ddim_invert(m, x0, 999, steps=50)
    back = ddim_sample(m, x_T, 999, 0, steps=50)
    assert float((back - x0).abs().mean()) < 0.1  # a round trip (explicit inversion: close, not exact), not a refusal
    with pytest.raises(
        ValueError, match=r"x0 must be in the model range \[-1, 1\] \(tolerance 0.5\)"
    ):  # [0, 255] data: still refused
        ddim_invert(m, (x0 + 1) * 127.5, 999, steps=50)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return False
        return True
    return False


def test_messages_and_docs_name_functions_that_exist():
    """Every ``pullback_utils.X.Y`` named in the package's messages and editing docs resolves (the range
    error sent users to ``pullback_utils.load_image``, which is not exported)."""
    root = Path(pu.__file__).parent
    files = [root / "diffusion" / "images.py", root / "diffusion" / "ddim.py", *sorted((root / "editing").glob("*.py"))]
    bad = sorted(
        {
            (f.name, name)
            for f in files
            for name in re.findall(r"pullback_utils(?:\.\w+)+", f.read_text())
            if not _resolves(name.rstrip("."))
        }
    )
    assert bad == []
    with pytest.raises(ValueError, match=r"pullback_utils\.diffusion\.images\.load_image reads files"):
        pu.diffusion.images.check_image_range(torch.tensor([0.0, 255.0]))


@pytest.mark.parametrize("t, says", [(1001, "timestep tau is level tau \\+ 1"), (0, "timestep 0 is t=1")])
def test_the_int_time_rule_is_stated_where_a_diffusers_user_meets_it(pixel, t, says):
    with pytest.raises(ValueError, match=rf"not a diffusers timestep.*{says}"):
        pixel.local_basis(pixel.noise(1), t, 2)


def test_a_basis_records_the_network_timestep_of_an_int_time(pixel):
    b = pixel.local_basis(pixel.noise(1), 400, 1, **FAST)
    assert (b.info["level"], b.info["timestep"]) == (400, 399)


# ================================================================================ 5. also
@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, "float32"])
def test_bases_over_refuses_non_float_storage(pixel, monkeypatch, dtype):
    _forbid_compute(monkeypatch, pixel)
    with pytest.raises(ValueError, match="dtype must be a floating-point torch dtype"):
        sweeps.bases_over(pixel, pixel.noise(1).unsqueeze(0), [0.5], 2, dtype=dtype, progress=False)


def test_a_degenerate_basis_raises_on_an_executor_as_in_the_serial_sweep(monkeypatch):
    class Stub:
        num_train_timesteps, sample_shape, name = 1000, (1, 2, 2), "stub"

    def fake_compute(model, items, k, *, transform, **kw):
        return [
            transform(
                LocalBasis(
                    v=torch.zeros(k, 1, 1, 2, 2),
                    u=torch.zeros(k, 1, 3),
                    s=torch.zeros(k),
                    info={"degenerate": i == 1, "rank": 1},
                )
            )
            for i, _ in enumerate(items)
        ]

    monkeypatch.setattr(sweeps, "compute_bases", fake_compute)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        with pytest.raises(
            ValueError,
            match=r"degenerate basis at t=0.2, sample 0: k=2 exceeds the Jacobian's "
            r"numerical rank 1",
        ):
            sweeps.bases_over(Stub(), torch.zeros(2, 1, 1, 2, 2), [0.5, 0.2], 2, progress=False, cluster=ex)


def test_energy_fraction_refuses_a_non_orthonormal_basis():
    from pullback_utils.ground_truth import energy_fraction

    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(8, 3, generator=g, dtype=torch.float64))[0].T
    v = torch.randn(5, 8, generator=g, dtype=torch.float64)
    e = energy_fraction(v, q)
    assert bool(((e >= 0) & (e <= 1 + 1e-12)).all())
    with pytest.raises(ValueError, match=r"basis rows must be orthonormal .* deviation of 3"):
        energy_fraction(v, 2.0 * q)  # would give values up to 4
    with pytest.raises(ValueError, match="orthonormal"):
        energy_fraction(v, torch.cat([q, q[:1]]))  # a repeated row: fractions above 1 too
