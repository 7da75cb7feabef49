"""Command line: ``python -m eqlib list | run NAME | merge NAME | show NAME``.

Several processes (:mod:`eqlib.distributed`): launched with ``EQLIB_COORDINATOR``,
``EQLIB_NUM_PROCESSES``, ``EQLIB_PROCESS_ID`` (or under SLURM's ``srun``), ``run`` and ``merge``
start JAX's multi-controller runtime before any JAX work; every process runs the experiment and
only process 0 writes and prints the summary.

Job arrays: ``run NAME --members a:b`` trains members a … b−1 of every ensemble of the experiment
and stores them under ``ranges/`` of the run directory; ``merge NAME`` (same preset and ``--set``)
checks that the stored ranges tile every ensemble, joins them, measures and writes the results —
the same results as one plain run, since member m is a pure function of (seed, m).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from eqlib import distributed
from eqlib.io import to_jsonable
from eqlib.presets import preset_name
from eqlib.runner import (
    MemberRangeError,
    apply_overrides,
    get_experiment,
    latest_results,
    list_experiments,
    parse_member_range,
    parse_override,
    run_experiment,
    STORED_PRESETS,
    store_run,
    stored_results,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eqlib",
        description="Run the experiments of 'Emergent Equivariance in Deep Ensembles'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list experiments and their presets")

    run = sub.add_parser("run", help="run an experiment (resumes an interrupted run)")
    run.add_argument("name")
    run.add_argument("--preset", default=None,
                     help="quick | reference | full (default: $EQLIB_PRESET or quick)")
    run.add_argument("--results", default=None, help="results root (default: $EQLIB_RESULTS or ./results)")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, parsed by its type (repeatable)",
    )
    run.add_argument("--fresh", action="store_true", help="ignore cached steps and recompute")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--store", action="store_true",
                     help="copy the finished run into results/reference/<name>/<preset>/ (reference "
                          "and full presets, unmodified, from a clean checkout) for the book to load")
    run.add_argument("--members", default=None, metavar="A:B",
                     help="job-array task: train only members A … B−1 of every ensemble and store them in "
                          "the run directory; the measurement and results are left to 'merge' (e.g. SLURM: "
                          "--members $((25*SLURM_ARRAY_TASK_ID)):$((25*SLURM_ARRAY_TASK_ID+25)))")

    merge = sub.add_parser(
        "merge", help="join the member ranges stored by 'run --members a:b' tasks, measure, write results",
        description="Check that the member ranges stored by 'run NAME --members a:b' tile 0 … M−1 of every "
                    "ensemble (no gap, no overlap), join them, and finish the run: the same results as one "
                    "plain 'run'. Give the same --preset and --set as the tasks.")
    merge.add_argument("name")
    merge.add_argument("--preset", default=None, help="as for run")
    merge.add_argument("--results", default=None, help="as for run")
    merge.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="as for run (the run directory is found by preset and config)")
    merge.add_argument("--quiet", action="store_true", help="no progress lines")
    merge.add_argument("--store", action="store_true", help="as for run: store the merged run")

    show = sub.add_parser("show", help="print the summary of the newest finished run")
    show.add_argument("name")
    show.add_argument("--preset", default=None)
    show.add_argument("--results", default=None)
    show.add_argument("--all", action="store_true", help="print the whole results.json")
    show.add_argument("--modified", action="store_true",
                      help="also consider runs whose config differs from the preset (labelled)")
    return parser


def _cmd_list() -> int:
    for name in list_experiments():
        exp = get_experiment(name)
        doc = exp.doc.splitlines()[0] if exp.doc else ""
        print(f"{name}  presets: {', '.join(exp.presets)}" + (f"  — {doc}" if doc else ""))
    return 0


def _resolve_run(args: argparse.Namespace) -> tuple[str, dict]:
    """Validate name, preset and ``--set`` overrides before anything runs."""
    exp = get_experiment(args.name)
    preset = preset_name(args.preset, valid=tuple(exp.presets))
    base = exp.presets[preset]
    overrides = {}
    for item in args.overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_override(base, key.strip(), text)
    apply_overrides(base, **overrides)
    return preset, overrides


def _cmd_run(args: argparse.Namespace, preset: str, overrides: dict, command: str) -> int:
    merge = args.command == "merge"
    members = None if merge else args.members
    try:
        path = run_experiment(args.name, preset, args.results, fresh=getattr(args, "fresh", False),
                              verbose=not args.quiet, member_range=members, merge=merge, **overrides)
    except MemberRangeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if members is not None or not distributed.is_writer():  # a range task reports itself; one writer
        return 0
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)["summary"]
    print(json.dumps(summary, indent=2))
    print(path)
    if getattr(args, "store", False):
        print(f"stored: {store_run(path, command)}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        _, meta = latest_results(args.name, args.preset, args.results,
                                 allow_modified=args.modified)
    except FileNotFoundError:
        preset = preset_name(args.preset, valid=tuple(get_experiment(args.name).presets))
        if preset == "quick":
            raise
        _, meta = stored_results(args.name, preset)  # the run stored in git
        print(f"# stored run: {meta['stored']['command']}")
    if args.all:  # the whole results.json; "modified" lists any fields that differ
        print(json.dumps(to_jsonable(meta), indent=2))
        return 0
    if meta.get("modified"):
        changes = ", ".join(f"{k}={v['run']!r} (preset {v['preset']!r})"
                            for k, v in meta["modified"].items())
        print(f"# MODIFIED run, not the {meta['preset']} preset: {changes}")
    device = meta.get("provenance", {}).get("device", {})
    print(
        f"# {meta['path']}\n# preset {meta['preset']}, finished {meta.get('timestamp')}, "
        f"backend {device.get('backend')} x{device.get('device_count')}, "
        f"wall time {meta.get('wall_time_s', float('nan')):.1f} s"
    )
    print(json.dumps(meta["summary"], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "show":
            return _cmd_show(args)
        distributed.initialize()  # several processes (environment): before any JAX work
        preset, overrides = _resolve_run(args)
        if args.command == "run" and args.members is not None:
            parse_member_range(args.members)
            if args.store:
                raise ValueError("--store takes a finished run: store the merged run, not a member range")
            if args.fresh:  # it would delete the steps and checkpoints of the other tasks of the array
                raise ValueError("--fresh cannot be combined with --members (the tasks share one run directory)")
        if getattr(args, "store", False) and (overrides or preset not in STORED_PRESETS):
            raise ValueError(f"--store takes an unmodified run of a preset in {STORED_PRESETS}, "
                             f"got preset {preset!r}" + (" with --set" if overrides else ""))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    command = " ".join(["python -m eqlib", *(argv if argv is not None else sys.argv[1:])])
    return _cmd_run(args, preset, overrides, command)  # errors inside the experiment keep their traceback

if __name__ == "__main__":
    sys.exit(main())
