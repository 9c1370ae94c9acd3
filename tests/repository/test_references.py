"""Every file a docstring, comment or doc sends the reader to is in the repository."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [path for folder in ("hf_sslviews", "modeling", "model_cards", "scripts", "benchmarks", "docs", "tests") for path in (REPO / folder).rglob("*")
           if path.suffix in (".py", ".md") and "__pycache__" not in path.parts] + [REPO / "README.md"]
# A path after --output is where a command will write, not a file the reader is sent to.
REFERENCE = re.compile(r"(?<![\w/.-])(?<!--output )((?:model_cards|docs|scripts|benchmarks|tests)/[\w./-]+\.(?:md|py|json|png))")


def test_every_referenced_repository_file_exists():
    missing = sorted({(str(path.relative_to(REPO)), target) for path in SOURCES for target in REFERENCE.findall(path.read_text(errors="replace"))
                      if "<" not in target and not (REPO / target).exists()})
    assert not missing, missing


def test_no_reference_to_the_specification_outside_the_repository():
    # 33 docstrings sent the reader to a METHODS.md the repository does not hold.
    assert not [str(path.relative_to(REPO)) for path in SOURCES if "METHODS.md" in path.read_text(errors="replace") and path.name != "test_references.py"]
