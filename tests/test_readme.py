"""Every Python block of the README runs as written (in a fresh interpreter, from a temporary folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs(i, tmp_path):
    script = tmp_path / f"block{i}.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + BLOCKS[i])
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"README block {i} failed:\n{BLOCKS[i]}\n--- stderr:\n{out.stderr[-3000:]}"


def test_readme_has_python_blocks():
    assert BLOCKS
