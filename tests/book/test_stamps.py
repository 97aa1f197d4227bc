"""The chapters' fingerprint (issue 23): a chapter reruns when the code it runs or the weights it names
change, and not for a docstring or comment edit, nor for weights of a model it does not name."""

from __future__ import annotations

import shutil
from pathlib import Path

from pullback_utils.book.stamps import package_fingerprint, stamp_key, weights_digest

PKG = Path(__file__).resolve().parents[2] / "pullback_utils"


def _copy_package(tmp_path: Path) -> Path:
    dest = tmp_path / "pullback_utils"
    shutil.copytree(PKG, dest, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_docstring_and_comment_edits_rerun_nothing_code_edits_do(tmp_path):
    pkg = _copy_package(tmp_path)
    notebook = tmp_path / "chapter.md"
    notebook.write_text("model = 'disks'\n")
    key = lambda: stamp_key(notebook, {"k": 3}, *package_fingerprint(pkg), weights_dir=tmp_path / "none")  # noqa: E731
    before = key()
    solvers = pkg / "engine" / "solvers.py"
    # a module docstring, a function docstring, a comment, blank lines: the same key (the chapter is skipped)
    src = solvers.read_text()
    solvers.write_text('"""Reworded."""' + src[src.index('"""', 3) + 3 :])
    _edit(solvers, "def jacobian_svd(", "# a new comment\n\n\ndef jacobian_svd(")
    fn_doc = solvers.read_text().split("def jacobian_svd(", 1)[1].split('"""', 2)[1]
    _edit(solvers, fn_doc, "A different docstring.")
    assert key() == before
    # a change of what runs: another key (the chapter reruns)
    _edit(solvers, "def jacobian_svd(", "_NEW_CONSTANT = 1\n\n\ndef jacobian_svd(")
    assert key() != before


def test_the_book_tooling_is_not_in_the_fingerprint(tmp_path):
    pkg = _copy_package(tmp_path)
    before = package_fingerprint(pkg)
    (pkg / "book" / "runner.py").write_text((pkg / "book" / "runner.py").read_text() + "\nX = 1\n")
    assert package_fingerprint(pkg) == before
    (pkg / "py.typed").write_text("partial\n")  # a data file of the package: bytes count
    assert package_fingerprint(pkg) != before


def test_weights_count_only_for_the_models_a_chapter_names(tmp_path):
    weights = tmp_path / "weights"
    for folder in ("disks", "shapes", "shapes-text", "ladder/ladder-1-s0"):
        (weights / folder).mkdir(parents=True)
        (weights / folder / "zoo.json").write_text("{}")
        (weights / folder / "WEIGHTS.sha256").write_text(f"{folder} 0\n")
        (weights / folder / "model.safetensors").write_bytes(b"x" * 10)
    disks = weights_digest("load_model('disks')", weights)
    shapes = weights_digest("model: shapes", weights)
    ladder = weights_digest("the ladder's models", weights)
    assert weights_digest("nothing bundled", weights) == weights_digest("", weights)
    (weights / "shapes-text" / "WEIGHTS.sha256").write_text("retrained 1\n")  # not named by either
    assert weights_digest("load_model('disks')", weights) == disks
    assert weights_digest("model: shapes", weights) == shapes  # "shapes" is not "shapes-text"
    (weights / "disks" / "WEIGHTS.sha256").write_text("retrained 2\n")
    assert weights_digest("load_model('disks')", weights) != disks
    assert weights_digest("model: shapes", weights) == shapes
    (weights / "ladder" / "ladder-1-s0" / "zoo.json").write_text('{"steps": 2}')
    assert weights_digest("the ladder's models", weights) != ladder
    (weights / "disks" / "model.safetensors").write_bytes(b"y" * 10)  # big files: through WEIGHTS.sha256 only
    assert weights_digest("load_model('disks')", weights) == weights_digest("disks", weights)


def test_the_key_follows_the_named_weights(tmp_path):
    weights = tmp_path / "weights"
    (weights / "disks").mkdir(parents=True)
    (weights / "disks" / "zoo.json").write_text("{}")
    nb = tmp_path / "chapter.md"
    nb.write_text("model = 'disks'\n")
    other = tmp_path / "other.md"
    other.write_text("model = None\n")
    k1, o1 = stamp_key(nb, {}, "0", "h", weights_dir=weights), stamp_key(other, {}, "0", "h", weights_dir=weights)
    (weights / "disks" / "zoo.json").write_text('{"retrained": true}')
    assert stamp_key(nb, {}, "0", "h", weights_dir=weights) != k1
    assert stamp_key(other, {}, "0", "h", weights_dir=weights) == o1
