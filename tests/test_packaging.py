"""Repository contract: pyproject and environment.yml list the same dependencies; README's commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pkgs = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    env_names = {_name(d) for d in pip_list if not d.startswith("-e")} | conda_pkgs
    assert {_name(d) for d in deps} == env_names
    # version constraints agree too (e.g. jupyter-book<2)
    pins = {_name(d): d.replace(" ", "") for d in deps if re.search(r"[<>=]", d)}
    for d in pip_list:
        if _name(d) in pins:
            assert d.replace(" ", "") == pins[_name(d)]


def test_readme_gives_the_ci_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
