"""Sphinx extension (``eqlib.sphinx_figures`` in _config.yml): every figure of the book also
saved under a stable name, for slides.

After an HTML build, ``_build/html/figures/`` holds each figure that a chapter's code draws,
named ``<chapter>-fig<NN>.png`` in reading order (``ising-fig03.png`` is the third figure of
the Ising chapter), plus ``index.html``, a page listing them all with thumbnails. The names stay
the same from build to build as long as a chapter's figures keep their order; the files inside
``_images/`` are named by content hash and change whenever a figure changes.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

from docutils import nodes


def _figures(app, docname: str) -> list[Path]:
    """The source files of the images of page ``docname``, in reading order."""
    found = []
    for node in app.env.get_doctree(docname).findall(nodes.image):
        candidates = node.get("candidates", {})  # {"*": path} for a cell's output image
        rel = next((c for c in candidates.values() if c.endswith((".png", ".svg"))), None)
        if rel and not rel.startswith(("http:", "https:", "data:")):
            found.append(Path(app.srcdir) / rel)
    return found


def _export(app, exception) -> None:
    """Copy the collected figures to ``<outdir>/figures`` and write its index page."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "figures"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = []
    for docname in sorted(app.env.found_docs):
        stem = Path(docname).name
        for number, path in enumerate(_figures(app, docname), 1):
            if not path.is_file():
                continue
            name = f"{stem}-fig{number:02d}{path.suffix}"
            shutil.copy2(path, out / name)
            rows.append((stem, name))
    items = "\n".join(
        f'<li><a href="{html.escape(n)}"><img src="{html.escape(n)}" width="240" '
        f'alt="{html.escape(n)}"></a> <code>{html.escape(n)}</code></li>' for _, n in rows)
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Figures for slides"
        f"</title></head><body><h1>Figures for slides ({len(rows)})</h1>\n<ul>\n{items}\n"
        "</ul></body></html>\n", encoding="utf8")


def setup(app):
    app.connect("build-finished", _export)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": False}
