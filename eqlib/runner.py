"""The shared experiment runner: preset → resumable steps → results file with provenance.

A run lives in ``<root>/<experiment>/<preset>-<config_hash>/``::

    steps/<name>.npz        cached output of ``run.step(name, fn)`` (reused on rerun)
    steps/<name>.json       wall time of that step when it was computed
    checkpoints/<name>.npz  state that long steps save themselves (see ``Run.checkpoint_path``)
    results.npz             arrays the chapters plot
    results.json            config, preset, summary, provenance, wall time

Experiments register themselves on import of ``eqlib.experiments.<name>``::

    @experiment("ising", quick=IsingConfig(), full=IsingConfig(n_members=1000, epochs=200))
    def run_ising(run: Run, cfg: IsingConfig) -> dict:
        data = run.step("data", lambda: make_data(cfg))
        ...
        return {"arrays": {...}, "summary": {...}}
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import re
import shutil
import sys
import textwrap
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eqlib.io import load_arrays, load_json, save_arrays, save_json
from eqlib.presets import PRESETS, REQUIRED_PRESETS, config_dict, config_hash, preset_name
from eqlib.provenance import git_info, provenance, utc_now_iso

__all__ = [
    "RESULTS_ENV_VAR",
    "default_results_root",
    "display_path",
    "Run",
    "latest_results",
    "Experiment",
    "register",
    "experiment",
    "get_experiment",
    "list_experiments",
    "apply_overrides",
    "parse_override",
    "run_experiment",
    "STORED_PRESETS",
    "stored_dir",
    "store_run",
    "stored_results",
    "run_label",
    "chapter_results",
]

RESULTS_ENV_VAR = "EQLIB_RESULTS"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
Arrays = dict[str, np.ndarray]


def display_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` as printed for a reader: relative to the results root, never a machine path.

    Under the default root it reads ``results/<experiment>/...``; under ``$EQLIB_RESULTS`` it
    reads ``$EQLIB_RESULTS/...``; a path outside the root is shown by its name alone.
    """
    root = Path(root) if root is not None else default_results_root()
    path = Path(path)
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name
    prefix = f"${RESULTS_ENV_VAR}" if os.environ.get(RESULTS_ENV_VAR) else root.name
    return f"{prefix}/{rel}" if rel != "." else prefix


def default_results_root() -> Path:
    """``$EQLIB_RESULTS``, else ``<repo>/results`` for a source checkout, else ``./results``."""
    env = os.environ.get(RESULTS_ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "eqlib").is_dir():
        return repo / "results"
    return Path.cwd() / "results"


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in {".", ".."}:
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits, '_', '-', '.' (not starting with '.')"
        )
    return name


def _check_step_name(name: str) -> str:
    """Step names are relative paths of valid segments, e.g. ``"train/member_003"``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid step name {name!r}: must be a non-empty string")
    for part in name.split("/"):
        if not _NAME_RE.match(part) or part in {".", ".."}:
            raise ValueError(
                f"invalid step name {name!r}: segment {part!r} must be letters, digits, '_', '-', "
                "'.' (no empty segments, no '..', no leading '/')"
            )
    return name


def _as_arrays(value: Any, what: str) -> Arrays:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must return a dict of name -> array, got {type(value).__name__}")
    return {str(k): np.asarray(v) for k, v in value.items()}


class Run:
    """One run directory ``root/<experiment>/<preset>-<config_hash>/`` with resumable steps.

    Args:
      experiment: experiment name (directory name).
      preset: preset name, e.g. ``"quick"``.
      config: the preset's dataclass instance (or a dict) — hashed into the directory name.
      root: results root; defaults to :func:`default_results_root`.
      fresh: delete cached steps and checkpoints first, recomputing everything.
      verbose: print progress lines (``[exp/preset] step 'x': resumed``).
    """

    def __init__(
        self,
        experiment: str,
        preset: str,
        config: Any,
        root: str | os.PathLike | None = None,
        *,
        fresh: bool = False,
        verbose: bool = True,
    ) -> None:
        self.experiment = _check_name(experiment, "experiment name")
        self.preset = _check_name(preset, "preset name")
        self.config = config
        self.config_dict = config_dict(config)
        self.config_hash = config_hash(config)
        self.root = Path(root) if root is not None else default_results_root()
        self.dir = self.root / experiment / f"{preset}-{self.config_hash}"
        self.verbose = verbose
        self.resumed_steps: list[str] = []
        self.computed_steps: list[str] = []
        self.finished_path: Path | None = None
        self._t0 = time.perf_counter()
        if fresh:
            for sub in ("steps", "checkpoints"):
                shutil.rmtree(self.dir / sub, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log(f"run directory {display_path(self.dir, self.root)}")

    def __repr__(self) -> str:
        return f"Run({self.experiment!r}, {self.preset!r}, dir={str(self.dir)!r})"

    @property
    def seed(self) -> int | None:
        """``config.seed`` when the config has one."""
        seed = self.config_dict.get("seed")
        return int(seed) if isinstance(seed, (int, np.integer)) else None

    @property
    def elapsed(self) -> float:
        """Seconds since this Run object was created."""
        return time.perf_counter() - self._t0

    @property
    def show_progress(self) -> bool:
        """Whether long loops show tqdm bars: when verbose, on a terminal or with ``$EQLIB_PROGRESS=1``.

        ``$EQLIB_PROGRESS=0`` turns them off; in a notebook (no terminal) they are off by default.
        """
        flag = os.environ.get("EQLIB_PROGRESS", "").strip().lower()
        if not self.verbose or flag in {"0", "false", "no", "off"}:
            return False
        return flag in {"1", "true", "yes", "on"} or (sys.stderr is not None and sys.stderr.isatty())

    def log(self, message: str) -> None:
        """Print ``[experiment/preset] message`` when verbose."""
        if self.verbose:
            print(f"[{self.experiment}/{self.preset}] {message}", flush=True)

    def step_path(self, name: str) -> Path:
        """Path of the cached arrays of step ``name``."""
        return self.dir / "steps" / f"{_check_step_name(name)}.npz"

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> Arrays:
        """Return the cached arrays of step ``name``, or compute them with ``fn()`` and cache them.

        ``fn`` returns ``{key: array}``; the result is always numpy arrays, identical whether
        computed now or resumed from ``steps/<name>.npz``.
        """
        path = self.step_path(name)
        if path.exists():
            try:
                arrays = load_arrays(path)
            except ValueError as err:
                self.log(f"step {name!r}: cached file unreadable, recomputing ({err})")
            else:
                self.resumed_steps.append(name)
                self.log(f"step {name!r}: resumed from {path.relative_to(self.dir)}")
                return arrays
        self.log(f"step {name!r}: computing")
        t0 = time.perf_counter()
        arrays = _as_arrays(fn(), f"step {name!r}")
        seconds = time.perf_counter() - t0
        save_arrays(path, arrays)
        save_json(path.with_suffix(".json"),
                  {"wall_time_s": seconds, "finished": utc_now_iso(), **git_info()})
        self.computed_steps.append(name)
        self.log(f"step {name!r}: done in {seconds:.1f} s")
        return arrays

    def checkpoint_path(self, name: str) -> Path:
        """Path ``checkpoints/<name>.npz`` (parent created) for steps that checkpoint themselves."""
        _check_step_name(name)
        path = self.dir / "checkpoints" / (name if name.endswith(".npz") else f"{name}.npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _step_records(self) -> dict[str, dict[str, Any]]:
        """Per step: ``wall_time_s``, ``commit`` and ``dirty`` as recorded when it was computed."""
        records: dict[str, dict[str, Any]] = {}
        for name in [*self.resumed_steps, *self.computed_steps]:
            try:
                meta = load_json(self.step_path(name).with_suffix(".json"))
            except (FileNotFoundError, ValueError):
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            try:
                seconds = float(meta["wall_time_s"])
            except (KeyError, TypeError, ValueError):
                seconds = None
            records[name] = {"wall_time_s": seconds, "commit": meta.get("commit"),
                             "dirty": meta.get("dirty")}
        return records

    def finish(self, arrays: dict[str, Any], summary: dict[str, Any]) -> Path:
        """Write ``results.npz`` and ``results.json`` atomically; return the json path.

        The json holds experiment, preset, config (+hash), seed, summary, provenance and wall time:
        ``wall_time_s`` since this Run was created, plus ``steps.wall_time_s`` per step as measured
        when it was computed (so resumed work is still accounted for).
        """
        arrays = _as_arrays(arrays, "finish(arrays)")
        if not isinstance(summary, dict):
            raise TypeError(f"summary must be a dict, got {type(summary).__name__}")
        save_arrays(self.dir / "results.npz", arrays)
        records = self._step_records()
        step_times = {name: r["wall_time_s"] for name, r in records.items()}
        now = provenance(self.seed)
        other_commit = sorted(name for name, r in records.items()
                              if r["commit"] != now["git"]["commit"])
        meta = {
            "experiment": self.experiment,
            "preset": self.preset,
            "config": self.config_dict,
            "config_hash": self.config_hash,
            "seed": self.seed,
            "summary": summary,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "wall_time_s": self.elapsed,
            "steps": {
                "computed": list(self.computed_steps),
                "resumed": list(self.resumed_steps),
                "wall_time_s": step_times,
                "total_step_time_s": sum(t for t in step_times.values() if t is not None),
                "commit": {name: r["commit"] for name, r in records.items()},
                "dirty": {name: r["dirty"] for name, r in records.items()},
                "computed_at_another_commit": other_commit,
            },
            "note": (
                f"{len(self.resumed_steps)} step(s) resumed from an earlier session; wall_time_s "
                "covers this session only, steps.wall_time_s the time each step took when computed"
                if self.resumed_steps
                else "all steps computed in this session"
            ) + (
                f"; computed at another commit than this one: {', '.join(other_commit)}"
                if other_commit else ""
            ),
            "provenance": now,
        }
        meta["timestamp"] = meta["provenance"]["timestamp"]
        path = save_json(self.dir / "results.json", meta)
        self.finished_path = path
        self.log(f"finished in {self.elapsed:.1f} s → {display_path(self.dir, self.root)}")
        return path


def _config_difference(stored: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """``{field: {"run": value, "preset": value}}`` for every field that differs."""
    keys = sorted(set(stored) | set(expected))
    return {k: {"run": stored.get(k), "preset": expected.get(k)}
            for k in keys if stored.get(k) != expected.get(k)}


def latest_results(
    experiment: str, preset: str | None = None, root: str | os.PathLike | None = None,
    *, allow_modified: bool = False,
) -> tuple[Arrays, dict[str, Any]]:
    """Arrays and metadata of the newest finished run of ``experiment`` at ``preset``.

    ``preset`` resolves through :func:`eqlib.presets.preset_name` (argument, ``$EQLIB_PRESET``,
    ``quick``). Newest means the latest ``timestamp`` in ``results.json``. Only a run whose
    stored config equals the preset's is returned: a run made with overrides (e.g.
    ``run_experiment("ising", group="D4")``) is never shown as the preset. With
    ``allow_modified`` the newest run of any config is returned instead, and
    ``meta["modified"]`` lists the fields that differ from the preset (empty for the preset).
    """
    _check_name(experiment, "experiment name")
    preset = _check_name(preset_name(preset, valid=_valid_presets(experiment)), "preset name")
    root = Path(root) if root is not None else default_results_root()
    registered = _REGISTRY.get(experiment)
    if registered is None and experiment.isidentifier():
        try:
            registered = get_experiment(experiment)
        except ValueError:
            registered = None
    expected = (json.loads(json.dumps(config_dict(registered.presets[preset])))
                if registered is not None and preset in registered.presets else None)
    exact, modified = [], []
    for json_path in sorted((root / experiment).glob(f"{preset}-*/results.json")):
        try:
            meta = load_json(json_path)
        except ValueError:
            continue
        if meta.get("preset") != preset or not (json_path.parent / "results.npz").exists():
            continue
        diff = ({} if expected is None
                else _config_difference(meta.get("config") or {}, expected))
        meta["modified"] = diff
        (modified if diff else exact).append((str(meta.get("timestamp", "")), json_path, meta))
    candidates = exact + modified if allow_modified else exact
    if not candidates:
        hint = ""
        if modified:
            fields = sorted({k for _, _, m in modified for k in m["modified"]})
            hint = (f" ({len(modified)} modified run(s) differing in {', '.join(fields)} are "
                    "there; pass allow_modified=True to see them)")
        raise FileNotFoundError(
            f"no finished results for experiment {experiment!r} with preset {preset!r} under "
            f"{display_path(root)}{hint}; produce them with:  python -m eqlib run {experiment} "
            f"--preset {preset}"
            + (f" --results {root}" if root != default_results_root() else "")
        )
    _, json_path, meta = max(candidates, key=lambda c: c[0])
    arrays = load_arrays(json_path.parent / "results.npz")
    meta["path"] = str(json_path)
    return arrays, meta


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: its presets and the function that runs it.

    ``run_fn(run, config)`` returns ``{"arrays": {name: array}, "summary": {...}}`` (or calls
    ``run.finish`` itself).
    """

    name: str
    presets: dict[str, Any]
    run_fn: Callable[[Run, Any], dict[str, Any]]
    doc: str = ""


_REGISTRY: dict[str, Experiment] = {}


def register(
    name: str, presets: dict[str, Any], run_fn: Callable[[Run, Any], dict[str, Any]]
) -> Experiment:
    """Register (or replace) experiment ``name``; presets must include ``quick`` and ``full``.

    Preset names are those of :data:`eqlib.presets.PRESETS` (``quick``, ``reference``, ``full``).
    """
    _check_name(name, "experiment name")
    missing = [p for p in REQUIRED_PRESETS if p not in presets]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"experiment {name!r}: unknown preset(s) {unknown}; valid: {', '.join(PRESETS)}")
    if missing:
        raise ValueError(f"experiment {name!r} lacks preset(s) {missing}; it has {sorted(presets)}")
    kinds = {type(cfg) for cfg in presets.values()}
    for pname, cfg in presets.items():
        _check_name(pname, "preset name")
        config_dict(cfg)  # validates dataclass-or-dict
    if len(kinds) != 1:
        raise ValueError(f"experiment {name!r}: presets must share one config type, got {kinds}")
    if not callable(run_fn):
        raise TypeError(f"run_fn of experiment {name!r} is not callable: {run_fn!r}")
    exp = Experiment(name, dict(presets), run_fn, (run_fn.__doc__ or "").strip())
    _REGISTRY[name] = exp
    return exp


def experiment(name: str, **presets: Any) -> Callable[[Callable], Callable]:
    """Decorator form of :func:`register`: ``@experiment("ising", quick=Cfg(), full=Cfg(...))``."""

    def decorate(run_fn: Callable[[Run, Any], dict[str, Any]]) -> Callable:
        register(name, presets, run_fn)
        return run_fn

    return decorate


def _experiment_modules() -> list[str]:
    import eqlib.experiments as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``, importing ``eqlib.experiments.<name>`` if needed."""
    _check_name(name, "experiment name")
    if name not in _REGISTRY and name.isidentifier():
        module = f"eqlib.experiments.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_experiment_modules()))
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(known) or '(none)'}")
    return _REGISTRY[name]


def list_experiments() -> list[str]:
    """Names of all experiments: every module in ``eqlib.experiments`` plus ones registered directly."""
    for mod in _experiment_modules():
        try:
            importlib.import_module(f"eqlib.experiments.{mod}")
        except Exception as err:  # noqa: BLE001 - one broken module must not hide the others
            warnings.warn(f"could not import eqlib.experiments.{mod}: {err!r}", stacklevel=2)
    return sorted(_REGISTRY)


def _valid_presets(name: str) -> tuple[str, ...]:
    exp = _REGISTRY.get(name)
    return tuple(exp.presets) if exp is not None else PRESETS


# --------------------------------------------------------------------------- overrides


def _field_types(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config):
        try:
            hints = typing.get_type_hints(type(config))
        except Exception:  # noqa: BLE001 - unresolved annotations: fall back to the value types
            hints = {}
        return {f.name: hints.get(f.name, type(getattr(config, f.name))) for f in dataclasses.fields(config)}
    return {k: type(v) for k, v in config.items()}


def _parse_as(tp: Any, text: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in {"none", "null"} and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse_as(arg, text, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"cannot parse {key}={text!r} as {tp}: {'; '.join(errors)}")
    if origin in (tuple, list):
        items = [t.strip() for t in text.strip("()[] ").split(",") if t.strip()]
        elem = args[0] if args else str
        return origin(_parse_as(elem, t, key) for t in items)
    if tp is bool:
        low = text.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"cannot parse {key}={text!r} as bool (use true/false)")
    if tp in (int, float, str):
        try:
            return tp(text)
        except ValueError as err:
            raise ValueError(f"cannot parse {key}={text!r} as {tp.__name__}") from err
    if tp is type(None):
        return None
    try:  # anything else: JSON literal, else the raw string
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_override(config: Any, key: str, text: str) -> Any:
    """Parse the string ``text`` for field ``key`` of ``config`` by the field's declared type."""
    types_ = _field_types(config)
    if key not in types_:
        raise ValueError(f"unknown config field {key!r}; fields: {', '.join(types_)}")
    return _parse_as(types_[key], text, key)


def apply_overrides(config: Any, **overrides: Any) -> Any:
    """``dataclasses.replace(config, **overrides)`` (or a dict update); unknown field → ValueError."""
    fields = list(_field_types(config))
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        raise ValueError(
            f"unknown config field(s) {', '.join(map(repr, unknown))} for "
            f"{type(config).__name__}; fields: {', '.join(fields)}"
        )
    if not overrides:
        return config
    if dataclasses.is_dataclass(config):
        return dataclasses.replace(config, **overrides)
    return {**config, **overrides}


def run_experiment(
    name: str,
    preset: str | None = None,
    root: str | os.PathLike | None = None,
    *,
    fresh: bool = False,
    verbose: bool = True,
    **overrides: Any,
) -> Path:
    """Run experiment ``name`` at ``preset`` (resolved by ``preset_name``) with field overrides.

    Returns the path of the written ``results.json``. Cached steps of an earlier, interrupted run
    with the same config are reused unless ``fresh``.
    """
    exp = get_experiment(name)
    preset = preset_name(preset, valid=tuple(exp.presets))
    config = apply_overrides(exp.presets[preset], **overrides)
    run = Run(name, preset, config, root, fresh=fresh, verbose=verbose)
    out = exp.run_fn(run, config)
    if run.finished_path is not None:
        return run.finished_path
    if not isinstance(out, dict) or "summary" not in out or set(out) - {"arrays", "summary"}:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise ValueError(
            f"experiment {name!r} must return {{'arrays': dict, 'summary': dict}} "
            f"(or call run.finish), got {got}"
        )
    return run.finish(out.get("arrays", {}), out["summary"])


# --------------------------------------------------------------------------- stored runs

#: Presets whose runs are stored in git under ``results/reference/`` (the cache stays out of git).
STORED_PRESETS: tuple[str, ...] = ("reference", "full")
STORED_ENV_VAR = "EQLIB_STORED"


def _stored_root(root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get(STORED_ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "results" / "reference"


def stored_dir(experiment: str, preset: str = "reference", root: str | os.PathLike | None = None) -> Path:
    """``results/reference/<experiment>/<preset>/`` of the source checkout (or ``root``, or ``$EQLIB_STORED``)."""
    _check_name(experiment, "experiment name")
    if preset not in STORED_PRESETS:
        raise ValueError(f"only presets {STORED_PRESETS} are stored, got {preset!r}")
    return _stored_root(root) / experiment / preset


def store_run(results_json: str | os.PathLike, command: str, root: str | os.PathLike | None = None,
              *, allow_dirty: bool = False) -> Path:
    """Copy a finished run (``results.json`` + ``results.npz``) into :func:`stored_dir`, atomically.

    The stored json is the run's, plus ``stored = {command, stored_at, source}``: the exact command
    that made it. Arrays are written zip-compressed. Refused (ValueError) for a preset that is not
    stored, for a run made with overrides of the preset's config, and — unless ``allow_dirty`` —
    for a run made from a checkout with uncommitted changes, whose commit would not say what code
    produced it. Returns the stored json's path.
    """
    json_path = Path(results_json)
    meta = load_json(json_path)
    arrays = load_arrays(json_path.parent / "results.npz")
    experiment, preset = meta["experiment"], meta["preset"]
    exp = get_experiment(experiment)
    expected = json.loads(json.dumps(config_dict(exp.presets[preset])))
    diff = _config_difference(meta.get("config") or {}, expected)
    if diff:
        raise ValueError(f"refusing to store a modified run of {experiment}/{preset} as the preset; "
                         f"differing fields: {', '.join(diff)}")
    git = meta.get("provenance", {}).get("git", {})
    dirty_steps = [k for k, v in meta.get("steps", {}).get("dirty", {}).items() if v]
    if not allow_dirty and (git.get("dirty") or dirty_steps or git.get("commit") is None):
        raise ValueError(f"refusing to store {experiment}/{preset}: it was made from a checkout with "
                         "uncommitted changes (or outside git), so its commit does not identify the "
                         "code; commit, then rerun with --store")
    target = stored_dir(experiment, preset, root)
    meta["stored"] = {"command": command, "stored_at": utc_now_iso(),
                      "source": display_path(json_path.parent)}
    save_arrays(target / "results.npz", arrays, compress=True)
    out = save_json(target / "results.json", meta)
    return out


def stored_results(experiment: str, preset: str = "reference",
                   root: str | os.PathLike | None = None) -> tuple[Arrays, dict[str, Any]]:
    """Arrays and metadata of the stored run of ``experiment`` at ``preset`` (see :func:`store_run`).

    FileNotFoundError names the command that produces it when there is none.
    """
    target = stored_dir(experiment, preset, root)
    json_path = target / "results.json"
    if not json_path.exists():
        raise FileNotFoundError(
            f"no stored {preset} run of {experiment!r} under {target}; produce it with:  "
            f"python -m eqlib run {experiment} --preset {preset} --store")
    meta = load_json(json_path)
    arrays = load_arrays(target / "results.npz")
    meta["path"] = str(json_path)
    return arrays, meta


def run_label(meta: dict[str, Any]) -> str:
    """One line naming a run: ``"reference preset · cpu ×1 (2 cores) · 2026-12-01 · commit 1a2b3c4 · 41 min"``.

    ``meta`` is a ``results.json`` dict (from :func:`latest_results` or :func:`stored_results`).
    A modified run says so with its differing fields.
    """
    prov = meta.get("provenance", {})
    device = prov.get("device", {})
    backend = device.get("backend") or "unknown device"
    kinds = device.get("device_kinds") or []
    what = backend if backend != "cpu" else f"cpu ({prov.get('host', {}).get('cpu_count')} cores)"
    if backend != "cpu" and kinds:
        what = f"{', '.join(kinds)} ×{device.get('device_count')}"
    commit = (prov.get("git", {}).get("commit") or "no commit")[:7]
    dirty = " (uncommitted changes)" if prov.get("git", {}).get("dirty") else ""
    date = str(meta.get("timestamp", ""))[:10]
    wall = meta.get("steps", {}).get("total_step_time_s") or meta.get("wall_time_s")
    parts = [f"{meta.get('preset')} preset", what, date, f"commit {commit}{dirty}"]
    if wall:
        parts.append(f"{wall / 60:.0f} min" if wall >= 120 else f"{wall:.0f} s")
    label = " · ".join(parts)
    if meta.get("fallback_from"):
        label = f"{label} (shown because no {meta['fallback_from']} run exists here)"
    if meta.get("modified"):
        label = f"MODIFIED run ({', '.join(meta['modified'])} differ) — " + label
    return label


def chapter_results(experiment: str, preset: str | None = None, *, live: tuple[str, ...] = ("quick",),
                    verbose: bool = False, root: str | os.PathLike | None = None,
                    stored_root: str | os.PathLike | None = None) -> tuple[Arrays, dict[str, Any]]:
    """What a chapter shows for ``experiment`` at ``preset`` (argument, ``$EQLIB_PRESET``, ``quick``).

    A preset in ``live`` is run (resuming from the results cache under ``root``) and its results
    returned. Any other size is never trained inside a notebook: the stored run
    (:func:`stored_results`, under ``stored_root``) is returned, else a finished local run of that
    preset; when there is neither — or the experiment has no such preset — the quick run is shown
    instead, ``meta["fallback_from"]`` names the preset that was asked for and ``meta["note"]``
    says why and gives the one command that produces it (:func:`run_label` mentions it). Every
    returned ``meta`` has a ``note`` ("" when the asked preset is shown).
    """
    exp = get_experiment(experiment)
    asked = preset_name(preset)
    if asked in live:
        run_experiment(experiment, asked, root, verbose=verbose)
        arrays, meta = latest_results(experiment, asked, root)
        meta["note"] = ""
        return arrays, meta
    if asked not in exp.presets:
        note = (f"{experiment!r} has no {asked!r} preset (only {', '.join(exp.presets)}); "
                f"showing the {live[0]} preset.")
    else:
        loaders = [lambda: latest_results(experiment, asked, root)]
        if asked in STORED_PRESETS:
            loaders.insert(0, lambda: stored_results(experiment, asked, stored_root))
        for load in loaders:
            try:
                arrays, meta = load()
            except FileNotFoundError:
                continue
            meta["note"] = ""
            return arrays, meta
        note = (f"No {asked} run of {experiment!r} is stored or cached here; it is not trained "
                f"inside the book. Produce it with:  python -m eqlib run {experiment} --preset "
                f"{asked} --store  — then build again. Showing the {live[0]} preset instead.")
    print(textwrap.fill(note, 88))
    arrays, meta = chapter_results(experiment, live[0], live=live, verbose=verbose, root=root,
                                   stored_root=stored_root)
    meta["fallback_from"], meta["note"] = asked, note
    return arrays, meta
