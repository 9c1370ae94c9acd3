"""The README's code runs as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_block_after(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme__from_python_example_trains_saves_and_exports(tmp_path):
    code = _python_block_after("### From Python")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "out"
    state = json.loads((out / "training_args.json").read_text())
    assert state["max_steps"] == 20
    assert (out / "model.safetensors").is_file()
    backbone = out / "backbone"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in backbone.iterdir()}
    assert "BYOL" in (backbone / "README.md").read_text()
    check = (
        "from transformers import AutoModel; import torch; "
        f"m = AutoModel.from_pretrained({str(backbone)!r}); "
        "print(tuple(m(torch.zeros(1, 3, 32, 32)).pooler_output.shape))"
    )
    loaded = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "(1, 192)", loaded.stderr[-2000:]
