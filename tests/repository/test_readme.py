"""The README's code runs as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


def _readme_commands() -> list[tuple[str, list[str]]]:
    """``(script, flags)`` of every ``python scripts/<name>.py ...`` line of the README (continuations joined)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    commands = []
    for match in re.finditer(r"python (scripts/\w+\.py)([^\n`#]*)", text):
        commands.append((match[1], re.findall(r"(?<!\S)(--\w+)", match[2])))
    return commands


@pytest.mark.slow
def test_readme__every_script_and_flag_it_names_exists():
    commands = _readme_commands()
    assert len(commands) >= 15 and {script for script, _ in commands} >= {"scripts/run_pretrain.py", "scripts/run_finetune.py", "scripts/export_backbone.py"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    helps = {}
    for script in sorted({script for script, _ in commands}):
        assert (REPO / script).is_file(), f"the README names {script}, which does not exist"
        result = subprocess.run([sys.executable, script, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        helps[script] = result.stdout
    unknown = [(script, flag) for script, flags in commands for flag in flags if not re.search(rf"(?<![\w-]){flag}\b", helps[script])]
    assert not unknown, f"flags the README gives that the scripts do not take: {unknown}"

