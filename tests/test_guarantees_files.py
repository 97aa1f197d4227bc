"""What the package guarantees about loading, caches, files, command lines and numbers (issue 25).

One section per category of bad input; the next round of hardening adds its cases to the matching
section. Every test here failed on the code before issue 25 and names the fault it covers. None starts a
chapter kernel: the runner's checks come before any kernel, and a kernel start fails the test.
(The guarantees are listed for users in ``book/guarantees.md``.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import papermill
import pytest
import torch
from diffusion_helpers import save_pixel_pipeline, tiny_scheduler
from unet_factories import make_tiny_unet2d

from pullback_utils import book
from pullback_utils.book import Layout
from pullback_utils.features.cache import BasisCache, BasisCacheWarning, resolve_cache_dir
from pullback_utils.models.diffusion_model import DiffusionModel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if a chapter kernel would start."""
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel started"))


@pytest.fixture
def book_copy(tmp_path) -> Layout:
    """The book's sources (``_config.yml``, ``book/`` without outputs) in a temporary folder, with the
    repository's notebooks, as in ``tests/book_workspace.py``."""
    root = tmp_path / "book-copy"
    root.mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("generated", "_build"))
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("*.md", ".ipynb_checkpoints"))
    return Layout(root)


def _tiny_model() -> DiffusionModel:
    return DiffusionModel(make_tiny_unet2d(seed=0), tiny_scheduler(), name="tiny")


@pytest.fixture
def umask():
    """Set the process umask for a test (restored afterwards)."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


# ================================================================================================ loading
def test_a_weights_file_missing_a_tensor_is_refused_naming_it_and_the_file(tmp_path):
    """Fault: a .safetensors file missing one tensor (no WEIGHTS.sha256) loaded with that weight uninitialised."""
    from safetensors.torch import load_file, save_file

    from pullback_utils.diffusion.weights import CorruptWeightsError
    from pullback_utils.zoo.loading import load_model

    folder = save_pixel_pipeline(tmp_path / "pipe")
    assert not (folder / "WEIGHTS.sha256").exists()
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[3]
    del tensors[dropped]
    save_file(tensors, weights)
    with pytest.raises(CorruptWeightsError) as info:
        load_model(folder)
    assert dropped in str(info.value) and str(weights) in str(info.value)


@pytest.mark.parametrize("bad", ["32", True, 0, -4, 2.5, (8,), (8, 0), (8, "8"), [8, 8, 8]])
def test_sample_size_must_be_positive_ints(bad):
    """Fault: sample_size="32" gave a sample shape (3, 3, 2) and True (3, 1, 1)."""
    from pullback_utils.zoo.loading import load_model

    with pytest.raises(ValueError, match="sample_size"):
        load_model("disks", sample_size=bad)


def test_sample_size_accepts_numpy_ints():
    from pullback_utils.zoo.loading import load_model

    assert load_model("disks", sample_size=np.int64(16)).sample_shape == (3, 16, 16)
    assert load_model("disks", sample_size=(np.int32(8), 16)).sample_shape == (3, 8, 16)


# ========================================================================================= cache and files
def test_an_empty_cache_dir_is_no_cache_everywhere(tmp_path, monkeypatch):
    """Fault: cache_dir="" wrote entries into the current folder while the sweeps read "" as no cache."""
    from pullback_utils.sweeps.bases import resolve_cache_dir as sweeps_resolve

    monkeypatch.chdir(tmp_path)
    assert resolve_cache_dir("") is None and resolve_cache_dir("  ") is None and sweeps_resolve("") is None
    model = _tiny_model()
    b = model.local_basis(model.noise(1, seed=0), 0.5, 2, cache_dir="", method="krylov")
    assert "cache" not in b.info and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no cache"):
        BasisCache("")


def test_cache_dir_expands_environment_variables_and_refuses_unset_ones(tmp_path, monkeypatch):
    """Fault: "$HOME/c" created a folder literally named "$HOME"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PB_GUARANTEE_CACHE", str(tmp_path / "shared"))
    monkeypatch.delenv("PB_GUARANTEE_UNSET", raising=False)
    assert resolve_cache_dir("$PB_GUARANTEE_CACHE/c") == tmp_path / "shared" / "c"
    assert resolve_cache_dir("${PB_GUARANTEE_CACHE}/c") == tmp_path / "shared" / "c"
    assert BasisCache("$PB_GUARANTEE_CACHE/c").root == tmp_path / "shared" / "c"
    model = _tiny_model()
    with pytest.raises(ValueError, match="PB_GUARANTEE_UNSET"):
        model.local_basis(model.noise(1, seed=0), 0.5, 2, cache_dir="$PB_GUARANTEE_UNSET/c", method="krylov")
    assert list(tmp_path.iterdir()) == []  # no "$PB_GUARANTEE_UNSET" folder


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_written_atomically_get_the_umask_mode(tmp_path, umask, mask):
    """Fault: cache entries, zoo.json, WEIGHTS.sha256 and trained weights were written 0600 whatever the umask."""
    from pullback_utils._io import write_json, write_text
    from pullback_utils.diffusion.weights import write_weights_digest
    from pullback_utils.engine.solvers import LocalBasis
    from pullback_utils.zoo.checkpoint import TrainState, save_checkpoint

    umask(mask)
    want = 0o666 & ~mask
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "zoo.json", {"a": 1})
    basis = LocalBasis(v=torch.zeros(2, 3), u=torch.zeros(2, 4), s=torch.ones(2), info={})
    entry = BasisCache(tmp_path / "cache").save("k" * 64, basis)
    unet = make_tiny_unet2d()
    unet.save_pretrained(tmp_path / "model" / "unet")
    digest = write_weights_digest(tmp_path / "model")
    state = tmp_path / "state" / "state.pt"
    st = TrainState(unet, unet, torch.optim.SGD(unet.parameters(), lr=0.1), torch.Generator())
    save_checkpoint(st, state, 0.0, tiny=True, kind="pixel", seed=0, batch_size=1, n_train=4)
    for path in (tmp_path / "a.txt", tmp_path / "zoo.json", entry, digest, state):
        assert stat.S_IMODE(path.stat().st_mode) == want, path


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_trained_model_folders_get_the_umask_mode(tmp_path, umask, mask):
    """Fault: a trained model (its safetensors, zoo.json, WEIGHTS.sha256) could not be loaded by another user."""
    from pullback_utils.zoo.records import save_model_folder

    umask(mask)
    save_model_folder(
        tmp_path / "m",
        "disks",
        make_tiny_unet2d(),
        {"name": "disks", "kind": "pixel"},
        {"step": [], "loss": [], "wall_s": []},
    )
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    assert {"zoo.json", "WEIGHTS.sha256", "training_log.json"} <= {p.name for p in files}
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~mask}, {k: oct(v) for k, v in modes.items()}


def test_an_unreadable_cache_folder_warns_and_computes(tmp_path, monkeypatch):
    """Fault: an unreadable cache folder raised PermissionError although the docs promise warn-and-compute.
    (Simulated: the tests run as root, whom permissions do not stop; the real case is the next test.)"""
    root = tmp_path / "cache"
    root.mkdir()
    real = Path.is_file

    def is_file(self):
        if self.parent == root:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    model = _tiny_model()
    with pytest.warns(BasisCacheWarning, match="cannot be read"):
        b = model.local_basis(model.noise(1, seed=0), 0.5, 2, cache_dir=root, method="krylov")
    assert b.v.shape[0] == 2 and b.info["cache"]["hit"] is False


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_cache_folder_warns_and_computes_for_real(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    root.chmod(0o000)
    try:
        model = _tiny_model()
        with pytest.warns(BasisCacheWarning):
            b = model.local_basis(model.noise(1, seed=0), 0.5, 2, cache_dir=root, method="krylov")
        assert b.v.shape[0] == 2
    finally:
        root.chmod(0o755)


def test_the_cache_key_follows_edits_through_data(tmp_path):
    """Fault: after ``p.data.mul_(3)`` the cache served a basis 1.31 rad from the true one."""
    model = _tiny_model()
    x = model.noise(1, seed=0)
    first = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    for p in model.unet.parameters():
        p.data.mul_(3)
    edited = model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov")
    truth = model.local_basis(x, 0.5, 2, method="krylov")
    assert edited.info["cache"]["hit"] is False
    torch.testing.assert_close(edited.s, truth.s, rtol=0, atol=0)
    assert not torch.allclose(edited.s, first.s, rtol=1e-3)
    assert model.local_basis(x, 0.5, 2, cache_dir=tmp_path, method="krylov").info["cache"]["hit"] is True


def test_the_value_probe_of_large_models_sees_data_edits(monkeypatch):
    """Above FULL_PROBE_BYTES the probe samples values and sums tensors: still sees ``.data`` edits."""
    import pullback_utils.features.cache as cache_mod

    monkeypatch.setattr(cache_mod, "FULL_PROBE_BYTES", 0)
    model = _tiny_model()
    before = model.fingerprint
    next(model.unet.parameters()).data.mul_(3)
    assert model.fingerprint != before
    next(model.unet.parameters()).data[0].add_(1.0)  # one row: its sum changes
    assert len({before, model.fingerprint}) == 2


# ================================================================================================ overwrites
def test_a_chapter_is_not_written_over_another_chapters_output(book_copy, no_kernel, capsys):
    """Fault: ``book chapter your_own_model -o book/generated/local_basis_tutorial`` replaced that chapter's output."""
    root = book_copy.root
    other = book_copy.out_dir("local_basis_tutorial")
    assert book.main(["--root", str(root), "chapter", "your_own_model", "-o", str(other)]) == 2
    assert "--force" in capsys.readouterr().err and not other.exists()
    elsewhere = root / "mine"  # a folder outside the book that holds another chapter's stamped output
    elsewhere.mkdir()
    (elsewhere / "stamp.json").write_text(json.dumps({"notebook": "editing"}))
    (elsewhere / "metrics.json").write_text("{}")
    assert book.main(["--root", str(root), "chapter", "your_own_model", "-o", str(elsewhere)]) == 2
    assert "'editing'" in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["metrics.json", "stamp.json"]
    from pullback_utils.book.runner import _check_destination

    assert _check_destination(book_copy, elsewhere, "your_own_model", force=True) == elsewhere.resolve()


def test_zoo_index_refuses_a_weights_folder_without_models(tmp_path, capsys):
    """Fault: ``zoo index --weights-dir /typo`` rewrote the index pages with "–" everywhere and exited 0."""
    from pullback_utils.zoo.__main__ import main

    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "index.md").write_text("committed\n")
    (tmp_path / "empty").mkdir()
    for weights in (tmp_path / "typo", tmp_path / "empty"):
        with pytest.raises(SystemExit) as info:
            main(["index", "--weights-dir", str(weights), "--out-dir", str(cards)])
        assert info.value.code == 2 and "weights_dir" in capsys.readouterr().err
    assert (cards / "index.md").read_text() == "committed\n" and not (cards / "ladder.md").exists()


def test_book_commands_refuse_a_folder_that_is_not_a_book(tmp_path, monkeypatch, no_kernel, capsys):
    """Faults: ``book run`` from an unrelated folder exited 0 and created book/generated there;
    ``--root /nonexistent run`` created it."""
    monkeypatch.chdir(tmp_path)
    assert book.main(["run", "--no-progress"]) == 2
    assert "not a book" in capsys.readouterr().err
    missing = tmp_path / "nonexistent"
    assert book.main(["--root", str(missing), "run", "--no-progress"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_runner_refuses_an_output_dir_parameter(book_copy, tmp_path, no_kernel, capsys):
    """Fault: ``chapter ... -p output_dir X`` was silently replaced by "."."""
    out = tmp_path / "out"
    assert (
        book.main(
            [
                "--root",
                str(book_copy.root),
                "chapter",
                "coarse_to_fine",
                "-p",
                "output_dir",
                str(tmp_path / "X"),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'output_dir' is set by the runner" in err and "-o/--output" in err
    assert not (tmp_path / "X").exists() and not out.exists()


# ============================================================================================ command lines
@pytest.mark.parametrize(
    "name, value, words",
    [
        ("k", "0", "k must be an int >= 1"),
        ("tol", ".nan", "tol must be a finite number"),
        ("model", "disk", "'disks'"),  # the typo and the closest bundled name
        ("n_samples", "3", "n_samples must be >= 4"),  # the jackknife over sample pairs
        ("cache_dir", "$PB_GUARANTEE_UNSET/c", "PB_GUARANTEE_UNSET"),
    ],
)
def test_the_runner_checks_values_before_a_kernel(
    book_copy, tmp_path, no_kernel, capsys, monkeypatch, name, value, words
):
    """Fault: type-correct but invalid values failed inside the kernel 25 s later, leaving a .failed/ folder;
    ``-p n_samples 3`` ran the whole sweep before "pair_values needs at least 4 units"."""
    monkeypatch.delenv("PB_GUARANTEE_UNSET", raising=False)
    out = tmp_path / "out"
    assert (
        book.main(
            [
                "--root",
                str(book_copy.root),
                "chapter",
                "timestep_discrepancy",
                "-p",
                name,
                value,
                "-o",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    assert words in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.failed").exists()


def test_the_fewest_units_come_from_the_chapters_tests():
    from pullback_utils.claims.registry import minimum_units

    assert minimum_units("timestep_discrepancy") == {"n_samples": 4}  # jackknife t over sample pairs
    assert minimum_units("coarse_to_fine") == {"n_samples": 2}  # sign-flip
    assert minimum_units("prompt_influence") == {}  # prompt-state units are not a parameter


def test_the_runner_refuses_a_cluster_where_nothing_answers(book_copy, no_kernel, capsys):
    """Fault: ``--cluster ray://127.0.0.1:1`` was accepted and failed inside the kernel."""
    assert (
        book.main(
            [
                "--root",
                str(book_copy.root),
                "run",
                "--only",
                "coarse_to_fine",
                "--cluster",
                "ray://127.0.0.1:1",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "nothing answers at 127.0.0.1:1" in capsys.readouterr().err
    assert not book_copy.generated.exists()


def test_a_damaged_training_checkpoint_is_named_with_what_to_do(tmp_path):
    """Fault: a damaged state.pt gave a raw torch.load traceback without the path."""
    from pullback_utils.zoo.train import train

    state = tmp_path / "cache" / "disks" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(ValueError) as info:
        train("disks", 2, tiny=True, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", progress=False)
    assert str(state) in str(info.value) and "delete it" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_resuming_with_another_n_train_is_refused(tmp_path):
    """Fault: resuming training with another --n-train rewrote the record for all steps."""
    from pullback_utils.zoo.train import train

    state = tmp_path / "cache" / "disks" / "state.pt"
    state.parent.mkdir(parents=True)
    torch.save({"model": {}, "ema": {}, "opt": {}, "step": 5, "n_train": 100, "seed": 0}, state)
    with pytest.raises(ValueError, match="n_train: checkpoint .* n_train=100 images, not 200"):
        train(
            "disks", 10, tiny=True, n_train=200, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", progress=False
        )
    folder = tmp_path / "folder"  # a model folder whose record says another size (no checkpoint)
    folder.mkdir()
    (folder / "zoo.json").write_text(json.dumps({"name": "disks", "kind": "pixel", "n_train": 100, "steps": 5}))
    with pytest.raises(ValueError, match="n_train: the model folder"):
        train("disks", 10, tiny=True, n_train=200, cache_dir=None, out_dir=folder, progress=False)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"seed": 1.7}, "seed"),
        ({"max_minutes": math.nan}, "max_minutes"),
        ({"max_minutes": -1.0}, "max_minutes"),
        ({"n_train": 10.5}, "n_train"),
        ({"steps": True}, "steps"),
    ],
)
def test_training_refuses_non_integer_or_non_finite_values(tmp_path, kwargs, words):
    """Fault: seed=1.7 and --max-minutes nan were coerced or accepted."""
    from pullback_utils.zoo.train import train

    args = {"steps": 2, **kwargs}
    steps = args.pop("steps")
    with pytest.raises(ValueError, match=words):
        train("disks", steps, tiny=True, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", progress=False, **args)
    assert not (tmp_path / "out").exists()


def test_zoo_command_line_refuses_max_minutes_nan(tmp_path, capsys):
    from pullback_utils.zoo.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(
            [
                "train",
                "disks",
                "--tiny",
                "--max-minutes",
                "nan",
                "--cache-dir",
                str(tmp_path / "c"),
                "--out-dir",
                str(tmp_path / "o"),
            ]
        )
    assert info.value.code == 2 and "max_minutes" in capsys.readouterr().err


def test_num_train_timesteps_and_seeds_must_be_ints():
    """Fault: num_train_timesteps=1000.7 and seed=1.7 were truncated."""
    from pullback_utils.diffusion.schedule import resolve_time

    with pytest.raises(TypeError, match="num_train_timesteps"):
        resolve_time(0.5, 1000.7)
    with pytest.raises(ValueError, match="seed"):
        _tiny_model().noise(1, seed=1.7)


# ================================================================================================ numbers
def test_numpy_scalars_are_accepted_where_python_numbers_are():
    """Fault: numpy integers and floats were refused as "not an integer" / "not a finite number"."""
    from pullback_utils import _validate as V
    from pullback_utils.ground_truth.study import check_design
    from pullback_utils.zoo.cards import _check_positive_int
    from pullback_utils.zoo.ladder import check_rung

    assert V.check_int(np.int64(3), "n") == 3 and type(V.check_int(np.uint8(3), "n")) is int
    assert V.check_real(np.float32(0.5), "x") == 0.5 and type(V.check_real(np.float16(1), "x")) is float
    assert V.check_fraction(np.float64(0.25), "f") == 0.25
    assert check_rung(np.int64(1)) == 1
    _check_positive_int(np.int64(4), "n_samples")
    check_design(
        {
            "models": ["disks"],
            "data_seed": np.int64(1),
            "k": np.int64(2),
            "n_neighbours": np.int32(4),
            "n_pool": np.int64(8),
            "rank_rtol": np.float32(1e-6),
        }
    )
    model = _tiny_model()
    assert model.noise(np.int64(2), seed=np.int64(3)).shape[0] == 2


@pytest.mark.parametrize("bad", [np.bool_(True), True, np.float64(2.0), np.array([3]), "3"])
def test_numpy_bools_and_non_integers_are_still_refused(bad):
    from pullback_utils import _validate as V

    with pytest.raises(ValueError, match="n must be an int"):
        V.check_int(bad, "n")
