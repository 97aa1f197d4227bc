"""The zoo's command line (``python -m pullback_utils.zoo``), its aliases, and the package's import graph."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pullback_utils.zoo.__main__ import main

ZOO = Path(__file__).resolve().parents[2] / "pullback_utils" / "zoo"


def _zoo_imports() -> dict[str, set[str]]:
    """module -> the zoo modules it imports (at the top or inside functions)."""
    graph = {}
    for f in ZOO.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "pullback_utils.zoo":
                    deps |= {a.name for a in node.names}
                elif node.module.startswith("pullback_utils.zoo."):
                    deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[2] for a in node.names if a.name.startswith("pullback_utils.zoo.")}
        graph[f.stem] = deps - {f.stem}
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycle_and_cards_do_not_import_train():
    graph = _zoo_imports()
    assert {"unet", "train", "cards", "evaluate", "card_text", "__main__"} <= set(graph)
    cycles = [m for m in graph if m in _reach(graph, m)]
    assert cycles == []
    for m in ("cards", "card_text", "card_index", "evaluate", "fitting"):
        assert "train" not in _reach(graph, m), m
    for leaf in ("vocab", "paths", "recipe"):
        assert graph[leaf] == set(), leaf


def test_ladder_command_refuses_other_models_and_bad_workers(capsys):
    with pytest.raises(SystemExit):
        main(["ladder", "disks"])
    assert "['disks'] are not ladder models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ladder", "ladder-9-s0"])
    assert "unknown zoo model 'ladder-9-s0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ladder", "ladder-1-s0", "--workers", "0"])
    assert "workers: must be an int >= 1, got 0" in capsys.readouterr().err


def test_card_command_names_the_valid_models(capsys):
    with pytest.raises(SystemExit):
        main(["card", "shapez"])
    err = capsys.readouterr().err
    assert "unknown zoo model 'shapez'" in err and "did you mean 'shapes'" in err


def test_index_command_writes_both_pages(tmp_path):
    (tmp_path / "w" / "disks").mkdir(parents=True)  # one model (a folder without any is refused: issue 25)
    (tmp_path / "w" / "disks" / "zoo.json").write_text('{"name": "disks", "kind": "pixel", "steps": 7}')
    assert main(["index", "--out-dir", str(tmp_path), "--weights-dir", str(tmp_path / "w")]) == 0
    assert "| `disks` | one disk on black | 7 |" in (tmp_path / "index.md").read_text()
    assert "| `disks` |" in (tmp_path / "index.md").read_text()
    assert (tmp_path / "ladder.md").read_text().count("| not trained |") == 15


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ZOO.parents[1])] + sys.path))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_train_alias_trains_like_the_train_command(tmp_path):
    """``python -m pullback_utils.zoo.train`` (the alias the README and older scripts use) trains."""
    out = tmp_path / "m"
    r = _run(
        "pullback_utils.zoo.train",
        "disks",
        "--tiny",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--n-train",
        "8",
        "--out-dir",
        str(out),
        "--cache-dir",
        str(tmp_path / "c"),
        "--no-card",
        "--loss-weighting",
        "min-snr",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "disks: step 2" in r.stdout
    assert json.loads((out / "zoo.json").read_text())["runs"][-1]["loss_weighting"] == "min-snr"


@pytest.mark.parametrize(
    "alias, words",
    [
        ("pullback_utils.zoo.cards", "--markdown-only"),
        ("pullback_utils.zoo.parallel", "--workers"),
        ("pullback_utils.zoo", "{train,train-many,card,ladder,index}"),
    ],
)
def test_aliases_reach_their_commands(alias, words, tmp_path):
    r = _run(alias, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert words in r.stdout
