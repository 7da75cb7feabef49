"""Build the instructor or the student edition of the book from the one source.

    python tools/build_edition.py instructor        # the book as `jupyter-book build --all .`
    python tools/build_edition.py student           # solutions removed everywhere
    python tools/build_edition.py student --no-execute --out /tmp/student

The **instructor edition** is the book as it is: exercises with their solutions behind a toggle.
The **student edition** is the same book without any solution: the `{solution}` blocks are
removed from a copy of the sources (so neither the HTML pages nor the downloadable `.ipynb`/`.md`
sources contain them), sphinx-exercise's `hide_solutions` is switched on as a second guard, the
title says "student edition", and the Colab launch buttons are switched off (they would open the
repository's notebooks, which contain the solutions; students download the page's notebook and
open that in Colab instead). Everything else is identical. The output goes to
`_build/<edition>/` unless `--out` says otherwise; `_build/<edition>/_build/html/index.html` is
the entry page.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import json

REPO = Path(__file__).resolve().parents[1]
EDITIONS = ("instructor", "student")
_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}")


def strip_solutions(text: str) -> tuple[str, int]:
    """``text`` without its ``{solution}`` blocks (backtick or colon fences); and their count."""
    out: list[str] = []
    lines = text.splitlines(keepends=True)
    removed, i = 0, 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        fence = match.group("fence")
        close = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed {{solution}} block starting at line {i + 1}")
        removed += 1
        i = j + 1
        while out and not out[-1].strip() and i < len(lines) and not lines[i].strip():
            i += 1  # do not leave a double blank line where the block was
    return "".join(out), removed


def strip_notebook(path: Path) -> int:
    """Remove the solution blocks from every Markdown cell of a notebook, in place."""
    nb = json.loads(path.read_text(encoding="utf8"))
    total = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text, removed = strip_solutions("".join(cell["source"]))
        if removed:
            cell["source"] = text.splitlines(keepends=True)
            total += removed
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf8")
    return total


def student_sources(dest: Path) -> int:
    """Copy the book's sources to ``dest`` with every solution removed; return how many."""
    import yaml

    shutil.copytree(REPO / "book", dest / "book",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy2(REPO / "_toc.yml", dest / "_toc.yml")
    removed = 0
    for path in sorted((dest / "book").rglob("*")):
        if path.suffix == ".ipynb":
            removed += strip_notebook(path)
        elif path.suffix == ".md":
            text, n = strip_solutions(path.read_text(encoding="utf8"))
            path.write_text(text, encoding="utf8")
            removed += n
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    config["title"] = f"{config['title']} (student edition)"
    config["sphinx"].setdefault("config", {})["hide_solutions"] = True
    config["launch_buttons"]["colab_url"] = ""
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")
    return removed


def build(edition: str, out: Path, execute: bool = True, strict: bool = False) -> Path:
    """Build ``edition`` into ``out``; return the HTML folder."""
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build"]
    with tempfile.TemporaryDirectory(prefix=f"eqbook-{edition}-") as tmp:
        tmp = Path(tmp)
        if edition == "student":
            removed = student_sources(tmp / "src")
            print(f"student edition: {removed} solution block(s) removed from the sources")
            root, config = tmp / "src", tmp / "src" / "_config.yml"
        else:
            root, config = REPO, REPO / "_config.yml"
        if not execute:
            import yaml

            data = yaml.safe_load(config.read_text(encoding="utf8"))
            data["execute"]["execute_notebooks"] = "off"
            # unexecuted, no number is glued: the executed build checks that every glue resolves
            sphinx_config = data.setdefault("sphinx", {}).setdefault("config", {})
            sphinx_config["suppress_warnings"] = [*sphinx_config.get("suppress_warnings", []), "mystnb.glue"]
            config = tmp / "_config_noexec.yml"
            config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf8")
        cmd += [str(root), "--all", "--path-output", str(out), "--config", str(config),
                "--toc", str(root / "_toc.yml")]
        if strict:
            cmd += ["-W", "-n", "--keep-going"]
        subprocess.run(cmd, check=True, cwd=tmp)
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("edition", choices=EDITIONS)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: _build/<edition>)")
    parser.add_argument("--no-execute", action="store_true",
                        help="do not execute the notebooks (pages without outputs)")
    parser.add_argument("--strict", action="store_true", help="warnings are errors")
    args = parser.parse_args(argv)
    out = (args.out or REPO / "_build" / args.edition).resolve()
    html = build(args.edition, out, execute=not args.no_execute, strict=args.strict)
    print(f"{args.edition} edition: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
