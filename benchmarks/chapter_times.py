"""How long each chapter takes to run: every notebook executed top to bottom in a fresh kernel.

    .venv/bin/python benchmarks/chapter_times.py                 # all chapters, prints a table
    .venv/bin/python benchmarks/chapter_times.py --save          # also writes the JSON below
    .venv/bin/python benchmarks/chapter_times.py tour ising      # some chapters

Each chapter runs as the book build runs it (working directory book/, the experiments' stored
results under results/ reused when present — run once before measuring if you want the
"results on disk" times, or pass --fresh-results to point the runs at an empty results folder
and measure the first run). With --save the times go to benchmarks/results/chapter_times.json
with their provenance (date, machine, CPU count, jax version, git commit, results mode); the
teaching page (book/teaching.ipynb) shows that file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ("tour", "groups", "equivariance", "augmentation", "ntk", "theorem", "what_breaks_it",
         "ising", "fashion_mnist", "histology")
OUT = REPO / "benchmarks" / "results" / "chapter_times.json"


def time_chapter(name: str, timeout: int = 1800) -> float:
    """Seconds to execute book/<name>.ipynb in a fresh kernel (raises if a cell fails)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "book" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "book")}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", default=list(ORDER))
    parser.add_argument("--save", action="store_true", help=f"write {OUT.relative_to(REPO)}")
    parser.add_argument("--fresh-results", action="store_true",
                        help="run the experiments into an empty results folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.chapters) - set(ORDER))
    if unknown:
        parser.error(f"unknown chapter(s) {unknown}; choose from {list(ORDER)}")
    if args.fresh_results:
        os.environ["EQLIB_RESULTS"] = tempfile.mkdtemp(prefix="eqlib-results-")
    import jax

    from eqlib.provenance import git_info, utc_now_iso

    times = {}
    for name in args.chapters:
        times[name] = round(time_chapter(name), 1)
        print(f"{name:>16}: {times[name]:7.1f} s", flush=True)
    print(f"{'total':>16}: {sum(times.values()):7.1f} s")
    if args.save:
        record = {
            "seconds": times,
            "results": "fresh (experiments trained)" if args.fresh_results
            else "stored results reused where present",
            "date": utc_now_iso(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "commit": git_info(REPO)["commit"],
            "command": "python benchmarks/chapter_times.py " + " ".join(argv or sys.argv[1:]),
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf8")
        tmp.replace(OUT)
        print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
