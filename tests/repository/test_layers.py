"""The package's floors hold (docs/architecture.md): every import of hf_sslviews by hf_sslviews,
and no assignment to another module's globals.

The rule is read from the code's syntax, so imports inside functions count too. A new crossing
fails here with the file and the line, and either the import moves or the picture in
docs/architecture.md changes with it, on purpose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules every part may import: they import no other part of the package.
FOUNDATION = {"atomic", "safetensors_files", "model_cards", "resources", "__version__"}
# What each part may import besides itself and the foundation. runs/ is the top floor: the
# jobs behind the scripts put the parts together.
ALLOWED = {
    "modeling": set(),
    "views": set(),
    "data": {"views"},
    "methods": {"modeling", "views"},
    "training": {"modeling", "data", "views"},
    "evaluation": {"modeling", "data", "views"},
    "publish": {"modeling"},
    "runs": {"modeling", "views", "data", "methods", "training", "evaluation", "publish"},
}
PARTS = set(ALLOWED) | FOUNDATION


def _module_name(path: Path) -> list[str]:
    """The dotted name as a list, ``__init__`` kept last (relative imports resolve from its package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("modeling", "model_cards"):
        parts = ["hf_sslviews"] + parts  # installed as hf_sslviews.modeling / hf_sslviews.model_cards
    return parts


def _imports(source: str, name: list[str]):
    """``(line, imported module as a list of names)`` for every import of hf_sslviews in a module."""
    package = name[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                yield node.lineno, base + node.module.split(".")
            else:
                for alias in node.names:
                    yield node.lineno, base + [alias.name]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hf_sslviews":
            yield node.lineno, node.module.split(".")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hf_sslviews":
                    yield node.lineno, alias.name.split(".")


def _package_modules():
    """``(label, dotted name as a list, source)`` of every module of the package."""
    for path in sorted([*ROOT.glob("hf_sslviews/**/*.py"), *ROOT.glob("modeling/**/*.py"), *ROOT.glob("model_cards/**/*.py")]):
        yield str(path.relative_to(ROOT)), _module_name(path), path.read_text()


def _part(name: list[str]) -> str:
    return name[1] if len(name) > 1 else "__init__"


def crossings(modules) -> list[str]:
    found = []
    for label, name, source in modules:
        part = _part(name)
        if part == "__init__":  # hf_sslviews/__init__.py: the front door imports what it exports
            continue
        allowed = set() if part in FOUNDATION else ALLOWED.get(part)
        if allowed is None:
            found.append(f"{label}: hf_sslviews.{part} is not placed in docs/architecture.md's picture")
            continue
        for line, target in _imports(source, name):
            dest = _part(target)
            if dest not in allowed | FOUNDATION | {part, "__init__"}:
                found.append(f"{label}:{line}: {part} imports {'.'.join(target)} ({dest} is not below {part})")
    return found


def test_layers__every_part_of_the_package_is_in_the_picture():
    parts = {p.name.removesuffix(".py") for p in (ROOT / "hf_sslviews").iterdir() if p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")}
    parts |= {"modeling", "model_cards"}
    assert parts - {"__init__"} <= PARTS, f"parts not placed in ALLOWED / FOUNDATION (and docs/architecture.md): {sorted(parts - PARTS - {'__init__'})}"


def test_layers__no_import_crosses_a_floor_upwards():
    assert crossings(_package_modules()) == []


def test_layers__the_walker_sees_a_crossing():
    # The check must be able to fail: a views module importing the training loop (relatively,
    # inside a function) and publishing (absolutely); its own part and the foundation are fine.
    source = (
        "from . import base\nfrom ..atomic import write_text_atomic\n"
        "def f():\n    from ..training.trainer import SSLTrainer\n    import hf_sslviews.publish.cards\n"
    )
    found = crossings([("views/probe.py", ["hf_sslviews", "views", "probe"], source)])
    assert [entry.split(": ", 1)[0] for entry in found] == ["views/probe.py:4", "views/probe.py:5"]
    assert "(training is not below views)" in found[0] and "(publish is not below views)" in found[1]


# -- no module's globals are reassigned from outside ---------------------------------------------

_CODE = ["hf_sslviews/**/*.py", "modeling/**/*.py", "model_cards/**/*.py", "scripts/*.py"]


def module_global_assignments(source: str) -> list[int]:
    """Lines that assign an attribute of an imported module (``mod.name = ...``, ``setattr(mod, ...)``)."""
    tree = ast.parse(source)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            # ``from pkg import module``: whether the name is a module is unknown without importing;
            # a lower-case name assigned an attribute is treated as one.
            modules |= {alias.asname or alias.name for alias in node.names if alias.name.islower()}
    lines = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, (ast.Name, ast.Attribute)):
                root = target.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in modules:
                    lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
            if isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
                lines.append(node.lineno)
    return lines


def test_layers__no_module_global_of_another_module_is_assigned():
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for pattern in _CODE
        for path in sorted(ROOT.glob(pattern))
        for line in module_global_assignments(path.read_text())
    ]
    assert found == [], "assigning another module's globals (patching it) is not how this package changes behaviour: " + ", ".join(found)


@pytest.mark.parametrize("source, lines", [
    ("import transformers.trainer as hf_trainer\nhf_trainer.skip_first_batches = f\n", [2]),
    ("from transformers import trainer\nsetattr(trainer, 'x', 1)\n", [2]),
    ("import os\nos.environ['X'] = '1'\n", []),  # an item of a module's object, not its global
    ("from dataclasses import dataclass\nclass A:\n    pass\nA.x = 1\n", []),
])
def test_layers__the_patch_finder_sees_a_patch(source, lines):
    assert module_global_assignments(source) == lines


def test_layers__the_picture_in_the_docs_is_this_one():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for part, allowed in ALLOWED.items():
        match = re.search(rf"^\| `{part}/?` \| (?P<allowed>[^|]*) \|", text, flags=re.M)
        assert match, f"docs/architecture.md has no row for {part}"
        written = set(re.findall(r"`(\w+)`", match.group("allowed")))
        assert written == allowed, f"docs/architecture.md says {part} may import {sorted(written)}; the test enforces {sorted(allowed)}"
