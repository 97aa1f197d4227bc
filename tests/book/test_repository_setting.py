"""The repository's address is written in one place, ``repository.url`` of ``_config.yml``.

Every other copy in the tree is derived from it: the install cell every chapter notebook starts with
(checked to equal :attr:`pullback_utils.book.project.Repository.install_cell`; a notebook on Colab must
install the package before it can read any setting). Generated pages (install and citation snippets,
launch and issue buttons) are written from the setting at build time and are not in the tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from pullback_utils.book import Layout, repository
from pullback_utils.book.cli import main, write_install_cells

REPO = Path(__file__).resolve().parents[2]


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in out.decode().split("\0") if name]


def _first_code_cell(path: Path) -> str:
    nb = jupytext.read(path) if path.suffix == ".md" else nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source


def test_the_address_is_written_only_in_the_setting():
    repo = repository(REPO / "_config.yml")
    needles = (repo.github, repo.github.lower())
    found: dict[str, int] = {}
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        count = sum(text.count(n) for n in set(needles))
        if count:
            found[path.relative_to(REPO).as_posix()] = count
    assert found.pop("_config.yml") == 1
    derived = {f for f in found if f.startswith("notebooks/") and f.endswith((".md", ".ipynb"))}
    assert set(found) == derived, (
        f"the repository's address written outside _config.yml: {sorted(set(found) - derived)}"
    )
    for name in sorted(derived):
        assert found[name] == 1, f"{name}: the address appears {found[name]} times (only its install cell may hold it)"
        assert _first_code_cell(REPO / name) == repo.install_cell, f"{name}: install cell differs from the setting"


def test_install_cell_write_follows_a_changed_setting(tmp_path, capsys):
    for part in ("_config.yml", "notebooks"):
        src = REPO / part
        if src.is_dir():
            (tmp_path / part).mkdir()
            for f in list(src.glob("local_basis_tutorial.*")):
                (tmp_path / part / f.name).write_bytes(f.read_bytes())
        else:
            (tmp_path / part).write_bytes(src.read_bytes())
    (tmp_path / "book").mkdir()
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    config["repository"].update(url="https://github.com/someone/elsewhere", branch="stable")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))

    assert main(["--root", str(tmp_path), "install-cell"]) == 0
    printed = capsys.readouterr().out
    assert "git+https://github.com/someone/elsewhere@stable" in printed
    assert main(["--root", str(tmp_path), "install-cell", "--write"]) == 0
    cell = repository(tmp_path / "_config.yml").install_cell
    before = (REPO / "notebooks" / "local_basis_tutorial.md").read_text()
    for f in ("local_basis_tutorial.md", "local_basis_tutorial.ipynb"):
        assert _first_code_cell(tmp_path / "notebooks" / f) == cell
    after = (tmp_path / "notebooks" / "local_basis_tutorial.md").read_text()
    assert after.replace(cell, repository(REPO / "_config.yml").install_cell) == before  # nothing else changed
    assert write_install_cells(Layout(tmp_path), cell) == []  # already up to date

    (tmp_path / "notebooks" / "local_basis_tutorial.md").write_text(
        before.replace("import pullback_utils\nexcept", "import os\nexcept", 1)
    )
    with pytest.raises(RuntimeError, match="the first code cell is not the install cell"):
        write_install_cells(Layout(tmp_path), cell)
