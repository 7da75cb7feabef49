"""Write book/setup_cell.py into every notebook under book/ as its first code cell.

The set-up cell's text lives once, in book/setup_cell.py; tests/test_setup_cell.py fails when a
notebook's first code cell differs from it. Run after editing the template:

    python tools/sync_setup_cell.py

The cell gets the tag ``remove-cell`` (hidden on the rendered pages, kept in the notebook) and
no outputs; everything else in the notebook is left as it is.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "book" / "setup_cell.py"
TAG = "remove-cell"


def template_source() -> str:
    """The cell text: the template file without its final newline."""
    return TEMPLATE.read_text(encoding="utf8").rstrip("\n")


def first_code_cell(nb: dict) -> dict:
    """The notebook's first code cell; ValueError when it has none."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise ValueError("notebook has no code cell")


def sync(path: Path) -> bool:
    """Make ``path``'s first code cell the template (tagged); True when the file changed."""
    text = path.read_text(encoding="utf8")
    nb = json.loads(text)
    cell = first_code_cell(nb)
    source = template_source()
    cell["source"] = source.splitlines(keepends=True)
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != TAG]
    cell.setdefault("metadata", {})["tags"] = [TAG, *tags]
    cell["outputs"], cell["execution_count"] = [], None
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new, encoding="utf8")
        return True
    return False


def main() -> int:
    changed = [p for p in sorted((REPO / "book").glob("*.ipynb")) if sync(p)]
    for p in changed:
        print(f"updated {p.relative_to(REPO)}")
    print(f"{len(changed)} notebook(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
