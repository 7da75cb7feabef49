"""No result number is typed into a chapter's prose: every decimal or percentage comes from glue.

The check reads the Markdown cells of the chapters that report runs, removes what is not prose
(glue roles, maths, code spans, citations, links, directive headers) and fails on any remaining
decimal number (``0.93``) or percentage (``97 %``) that is not on the short allow-list of
quantities that are not results (licence names, …). Integers (counts such as "60,000 images",
angles such as "90°") are not flagged: they describe a setting, and the chapters glue the counts
that a run decides.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = ("tour", "ising", "fashion_mnist", "histology", "beyond_kernels",
            "beyond_fashion")

#: Matches that are not results, with the reason. Keep it short and explicit.
ALLOWED = {
    "CC BY 4.0": "a licence name",
    "CC BY-SA 3.0": "a licence name",
}

_NOT_PROSE = [
    r"\{glue(?::\w+)?\}`[^`]*`",             # glue roles
    r"\{(?:cite|cite:\w+|numref|ref|eq|doc|prf:ref)\}`[^`]*`",
    r"\$\$.*?\$\$", r"\$[^$\n]+\$",          # maths
    r"```.*?```", r"`[^`\n]*`",              # code
    r"\]\([^)]*\)", r"https?://\S+",         # link targets, URLs
    r"^:[\w-]+:.*$",                         # directive options
]
_NUMBER = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?\s?%|\d+\.\d+)(?![\w])")


def prose_numbers(markdown: str) -> list[str]:
    """Decimals and percentages left in ``markdown`` once glue, maths, code and links are removed."""
    text = markdown
    for allowed in ALLOWED:
        text = text.replace(allowed, " ")
    for pattern in _NOT_PROSE:
        text = re.sub(pattern, " ", text, flags=re.S | re.M)
    return [m.group(1) for m in _NUMBER.finditer(text)]


def test_the_check_finds_typed_numbers_and_ignores_glue():
    assert prose_numbers("accuracy of 97 % against 0.86") == ["97 %", "0.86"]
    assert prose_numbers("accuracy {glue:text}`acc:.1%` at $t = 0.5$ with `lr=3e-3`") == []
    assert prose_numbers("rotate by 90° on 28×28 images, 1,000 steps") == []
    assert prose_numbers("see [the fig](fig-1.2.png), CC BY 4.0") == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_typed_result_numbers_in_the_prose(chapter):
    nb = json.loads((BOOK / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            found += [f"cell {i}: {n!r}" for n in prose_numbers("".join(cell["source"]))]
    assert not found, (f"{chapter}: typed-in numbers in the prose (glue them from the run, or add "
                       f"a non-result to ALLOWED with its reason): {found}")
