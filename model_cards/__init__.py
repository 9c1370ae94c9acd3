"""The model-card templates and each method's card: ``<method>.md``.

A method's card is the one place its people-facing text lives: a front matter with its
``title`` (``MoCo v3``), the method section of the Hub card (a Jinja template rendered with the
run's config) and a ``## Citation`` section with the paper's BibTeX. The method registry and the
card renderer both read it from here, so neither keeps a copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Optional

_FRONT_MATTER = re.compile(r"\A---\n(?P<fields>.*?)\n---\n", re.S)
_CITATION = re.compile(r"\n## Citation\n(?P<body>.*?)(?=\n## |\Z)", re.S)
_BIBTEX = re.compile(r"```bibtex\n(?P<bibtex>.*?)\n```", re.S)


@dataclass(frozen=True)
class MethodCard:
    """One method's card file, split into its parts.

    Attributes:
        title: the method's name as people write it (``"APS (Asymmetric Patch Sampling)"``).
        text: the method section (a Jinja template), without front matter and citation.
        citation: the paper's BibTeX, without the code fence.
    """

    title: str
    text: str
    citation: str


def _card_path(name: str):
    """The ``importlib.resources`` path of ``model_cards/<name>.md``."""
    return resources.files(__name__) / f"{name}.md"


def parse_method_card(source: str, name: str = "card") -> MethodCard:
    """Split a card file; a card without a title or a BibTeX citation is refused, naming the part."""
    front = _FRONT_MATTER.match(source)
    fields = dict(line.split(":", 1) for line in front.group("fields").splitlines() if ":" in line) if front else {}
    title = fields.get("title", "").strip()
    if not title:
        raise ValueError(f"model_cards/{name}.md: the front matter names no title (start the file with '---\\ntitle: ...\\n---')")
    body = source[front.end():] if front else source
    citation = _CITATION.search(body)
    bibtex = _BIBTEX.search(citation.group("body")) if citation else None
    if bibtex is None:
        raise ValueError(f"model_cards/{name}.md: no '## Citation' section with a ```bibtex block")
    text = (body[: citation.start()] + body[citation.end():]).strip() + "\n"
    return MethodCard(title=title, text=text, citation=bibtex.group("bibtex").strip())


@lru_cache(maxsize=None)
def method_card(name: str) -> Optional[MethodCard]:
    """The card of method ``name``, or None when the package ships none."""
    path = _card_path(name)
    return parse_method_card(path.read_text(), name) if path.is_file() else None


__all__ = ["MethodCard", "method_card", "parse_method_card"]
