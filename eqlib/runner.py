"""The shared experiment runner: preset → resumable steps → results file with provenance.

A run lives in ``<root>/<experiment>/<preset>-<config_hash>/``::

    steps/<name>.npz        cached output of ``run.step(name, fn)`` (reused on rerun)
    steps/<name>.json       wall time of that step when it was computed
    checkpoints/<name>/     state that long steps save themselves (an orbax directory; see
                            ``Run.checkpoint_path``; runs before this layout named it ``<name>.npz``)
    ranges/<name>/members<a>-<last>.npz
                            members a…last of the ensemble ``<name>`` trained by a job-array task
                            (``--members a:b``), joined by ``python -m eqlib merge``
    results.npz             arrays the chapters plot
    results.json            config, preset, summary, provenance, wall time

Experiments train their members through :meth:`Run.train` / :meth:`Run.train_in_chunks`, so that
one run can be split into member ranges (job arrays) and run on several processes
(:mod:`eqlib.distributed`: every process computes every step, only process 0 writes).

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
import io
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
from typing import Any, Callable, Iterator

import numpy as np

from eqlib.io import load_arrays, load_json, save_arrays, save_json
from eqlib.presets import PRESETS, REQUIRED_PRESETS, config_dict, config_hash, preset_name
from eqlib.provenance import git_info, provenance, utc_now_iso

__all__ = [
    "RESULTS_ENV_VAR",
    "MemberRangeError",
    "MembersPending",
    "parse_member_range",
    "check_tiling",
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


# --------------------------------------------------------------------------- member ranges

_RANGE_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_RANGE_FILE_RE = re.compile(r"^members(\d+)-(\d+)\.npz$")
#: History entries of :func:`eqlib.ensemble.train_ensemble` with a known member axis.
_MEMBER_AXIS = {"loss": 1, "first_epoch_step_loss": 0}
_SNAPSHOT = "snapshot/leaf_"


class MemberRangeError(ValueError):
    """A member range that does not fit an ensemble, or stored ranges that do not tile ``0 … M−1``."""


class MembersPending(Exception):
    """Raised where a member-range run has stored its members of an ensemble: the measurement that
    follows needs every member, so it is left to ``python -m eqlib merge`` (see :meth:`Run.train`)."""


class _PendingResult(dict):
    """The value of a step that a member-range run left for the merge: empty; reading a key raises."""

    def __init__(self, step: str):
        super().__init__()
        self.step = step

    def __getitem__(self, key):
        raise MembersPending(f"step {self.step!r} needs every member: it is computed by the merge")


def _snapshot(epoch: int, params: Any) -> dict[str, Any]:
    """``on_epoch_end`` of a member-range task whose metrics the merge computes: the parameters."""
    import jax

    return {f"{_SNAPSHOT}{i:05d}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(params))}


def parse_member_range(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"a:b"`` (or ``(a, b)``) → ``(a, b)``: members ``a … b−1``; ValueError unless ``0 ≤ a < b``."""
    if isinstance(text, str):
        match = _RANGE_RE.match(text)
        if match is None:
            raise ValueError(f"--members expects a:b (members a … b−1, e.g. 0:25), got {text!r}")
        a, b = int(match.group(1)), int(match.group(2))
    else:
        try:
            a, b = (int(v) for v in text)
        except (TypeError, ValueError):
            raise ValueError(f"a member range is (a, b) or 'a:b', got {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"a member range a:b needs 0 ≤ a < b, got {a}:{b}")
    return a, b


def _range_files(directory: Path) -> list[tuple[int, int, Path]]:
    """``(first, last, path)`` of every stored range under ``ranges/<name>/``, sorted."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _RANGE_FILE_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


def _spans(members: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    out, start = [], None
    for i, m in enumerate(members):
        if start is None:
            start = m
        if i + 1 == len(members) or members[i + 1] != m + 1:
            out.append(f"{start}" if start == m else f"{start}–{m}")
            start = None
    return ", ".join(out)


def check_tiling(ranges: list[tuple[int, int]], num_members: int, name: str = "ensemble") -> None:
    """Raise :class:`MemberRangeError` unless the ranges ``(first, last)`` cover ``0 … M−1`` exactly once."""
    count = np.zeros(num_members, int)
    beyond = [(a, b) for a, b in ranges if b >= num_members]
    for a, b in ranges:
        count[a:b + 1] += 1
    missing = np.flatnonzero(count == 0).tolist()
    twice = np.flatnonzero(count > 1).tolist()
    problems = []
    if missing:
        problems.append(f"members {_spans(missing)} are missing")
    if twice:
        problems.append(f"members {_spans(twice)} are stored more than once")
    if beyond:
        problems.append(f"ranges {beyond} reach past member {num_members - 1}")
    if problems:
        stored = ", ".join(f"{a}:{b + 1}" for a, b in ranges) or "none"
        raise MemberRangeError(f"{name}: the stored member ranges ({stored}) do not tile 0:{num_members}: "
                               + "; ".join(problems))


def _join_histories(parts: list[dict[str, np.ndarray]], sizes: list[int], per_member: bool,
                    name: str) -> dict[str, np.ndarray]:
    """The histories of consecutive member ranges (``sizes`` members each) as one ensemble's.

    ``loss (epochs, m)`` and parameter snapshots ``(K, m, ...)`` join along axis 1,
    ``first_epoch_step_loss (m, steps)`` along axis 0; ``epoch`` must agree. Other entries are
    ``on_epoch_end`` metrics: with ``per_member`` an entry ``(K, m, ...)`` joins along axis 1 and
    any other must be equal in every range (e.g. the epoch it was recorded at); without, they are
    dropped (the merge recomputes them from the snapshots).
    """
    out: dict[str, np.ndarray] = {}
    keys = list(dict.fromkeys(k for part in parts for k in part))
    for key in keys:
        if any(key not in part for part in parts):
            raise MemberRangeError(f"{name}: history entry {key!r} is missing from some member ranges")
        values = [np.asarray(part[key]) for part in parts]
        if key in _MEMBER_AXIS:
            out[key] = np.concatenate(values, _MEMBER_AXIS[key])
        elif key.startswith(_SNAPSHOT) or (per_member and key != "epoch" and all(
                v.ndim >= 2 and v.shape[1] == m for v, m in zip(values, sizes))):
            out[key] = np.concatenate(values, 1)
        elif key == "epoch" or per_member:
            if any(v.shape != values[0].shape or not np.array_equal(v, values[0]) for v in values):
                raise MemberRangeError(f"{name}: history entry {key!r} has no member axis and differs "
                                       "between member ranges, so the ranges cannot be joined")
            out[key] = values[0]
    return out


class Run:
    """One run directory ``root/<experiment>/<preset>-<config_hash>/`` with resumable steps.

    Args:
      experiment: experiment name (directory name).
      preset: preset name, e.g. ``"quick"``.
      config: the preset's dataclass instance (or a dict) — hashed into the directory name.
      root: results root; defaults to :func:`default_results_root`.
      fresh: delete cached steps and checkpoints first, recomputing everything.
      verbose: print progress lines (``[exp/preset] step 'x': resumed``).
      member_range: ``(a, b)`` or ``"a:b"``: a job-array task — train members ``a … b−1`` of every
        ensemble, store them under ``ranges/`` and leave the measurement to a merge (see
        :meth:`train_in_chunks`). The config, and so the run directory, is that of the whole run.
      merge: join the stored member ranges instead of training, then measure and finish.

    With several processes (:mod:`eqlib.distributed`) every process computes every step (training
    is one collective program over the members of all processes; everything else is the same
    deterministic computation on the same data), and only the writer (process 0) writes: step
    caches, checkpoints, member ranges and results. What the writer reads from disk — a cached
    step, a stored range — it sends to the others, so no process skips a step that another computes
    and no shared file system is needed.
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
        member_range: tuple[int, int] | str | None = None,
        merge: bool = False,
    ) -> None:
        from eqlib import distributed

        self.experiment = _check_name(experiment, "experiment name")
        self.preset = _check_name(preset, "preset name")
        self.config = config
        self.config_dict = config_dict(config)
        self.config_hash = config_hash(config)
        self.root = Path(root) if root is not None else default_results_root()
        self.dir = self.root / experiment / f"{preset}-{self.config_hash}"
        self.writer = distributed.is_writer()
        self.verbose = verbose and self.writer
        self.member_range = None if member_range is None else parse_member_range(member_range)
        if merge and self.member_range is not None:
            raise ValueError("a run either trains a member range or merges the stored ranges, not both")
        self.merging = bool(merge)
        self.resumed_steps: list[str] = []
        self.computed_steps: list[str] = []
        self.pending_steps: list[str] = []
        self.failed_training: str | None = None
        self._in_train = False
        self._new_range, self._range_calls = False, 0
        self.ranges: dict[str, dict[str, Any]] = {}  # per ensemble name: members, stored ranges
        self.finished_path: Path | None = None
        self._t0 = time.perf_counter()
        if self.writer:
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

    def _from_writer(self, read: Callable[[], dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
        """``read()`` on the writer, its arrays (or None) on every process (one process: just ``read()``)."""
        from eqlib import distributed

        if distributed.process_count() == 1:
            return read()
        blob = None
        if self.writer:
            found = read()
            if found is None:
                blob = b"none"
            else:
                buf = io.BytesIO()
                np.savez(buf, **found)
                blob = buf.getvalue()
        blob = distributed.broadcast_bytes(blob)
        if blob == b"none":
            return None
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> Arrays:
        """Return the cached arrays of step ``name``, or compute them with ``fn()`` and cache them.

        ``fn`` returns ``{key: array}``; the result is always numpy arrays, identical whether
        computed now or resumed from ``steps/<name>.npz``. In a member-range run a step whose
        training stored its members (:class:`MembersPending`) is not cached: it returns an empty
        mapping, and reading a key of it raises :class:`MembersPending`.
        """
        path = self.step_path(name)

        def read() -> dict[str, np.ndarray] | None:
            if not path.exists():
                return None
            try:
                return load_arrays(path)
            except ValueError as err:
                self.log(f"step {name!r}: cached file unreadable, recomputing ({err})")
                return None

        arrays = self._from_writer(read)
        if arrays is not None:
            self.resumed_steps.append(name)
            self.log(f"step {name!r}: resumed from {path.relative_to(self.dir)}")
            return arrays
        self.log(f"step {name!r}: computing")
        t0 = time.perf_counter()
        if self.member_range is not None:
            value = self._range_step(name, fn)
            if value is None:
                return _PendingResult(name)
        else:
            value = fn()
        arrays = _as_arrays(value, f"step {name!r}")
        seconds = time.perf_counter() - t0
        if self.writer:
            save_arrays(path, arrays)
            save_json(path.with_suffix(".json"),
                      {"wall_time_s": seconds, "finished": utc_now_iso(), **git_info()})
        self.computed_steps.append(name)
        self.log(f"step {name!r}: done in {seconds:.1f} s")
        return arrays

    def _range_step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """``fn()`` of a member-range run: its value, or None when it trained (or needs) member ranges.

        A training call stores its new range and raises :class:`MembersPending`; ``fn`` then runs
        again, with the ranges stored so far standing in for their ensembles (the task's own
        members), until no training call is new — so that every training call of the step is
        reached (e.g. the folds of a cross-validation inside one step). What ``fn`` computes on
        those stand-ins, or fails to, is thrown away: the merge computes it on every member.
        """
        while True:
            self._new_range, self._range_calls = False, 0
            try:
                value = fn()
            except MembersPending:
                if self._new_range:
                    continue
            except Exception as err:  # noqa: BLE001 - stand-ins are not the ensemble the code expects
                if self._range_calls == 0 or self.failed_training is not None:
                    raise
                self.log(f"step {name!r}: its code on the task's members failed ({type(err).__name__}); "
                         "the merge runs it on every member")
            else:
                if self._range_calls == 0:
                    return value
            self.pending_steps.append(name)
            self.log(f"step {name!r}: members {self.member_range[0]}:{self.member_range[1]} stored; "
                     "the rest of the step needs every member (python -m eqlib merge)")
            return None

    def checkpoint_path(self, name: str) -> Path:
        """Path ``checkpoints/<name>`` (parent created) for steps that checkpoint themselves.

        A checkpoint is an orbax directory (:func:`eqlib.ensemble.train_ensemble`). Runs before this
        layout named it ``<name>.npz`` (a directory, or an npz file of the older format): when only
        that exists, its path is returned, so an interrupted older run still resumes.
        """
        _check_step_name(name)
        if self.member_range is not None and not self._in_train:
            raise MemberRangeError(
                f"{self.experiment}: {name!r} trains members outside Run.train / Run.train_in_chunks, so a "
                "member-range run cannot split it (train through Run.train to make it splittable)")
        path = self.dir / "checkpoints" / name
        legacy = path.with_name(f"{path.name}.npz")
        if not name.endswith(".npz") and not path.exists() and legacy.exists():
            path = legacy
        if self.writer:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ----------------------------------------------------------------------- training members

    def range_dir(self, name: str) -> Path:
        """``ranges/<name>/``: where job-array tasks store their members of the ensemble ``name``."""
        return self.dir / "ranges" / _check_step_name(name)

    def train(self, name: str, module: Any, x: Any, y: Any, config: Any, num_members: int, seed: int = 0,
              **kwargs: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """Train the ensemble ``name`` of ``num_members`` members: :meth:`train_in_chunks`, joined.

        Returns ``(state, history)`` of all members (parameters as numpy arrays when they came in
        several chunks or ranges, or from several processes).
        """
        chunks = list(self.train_in_chunks(name, module, x, y, config, num_members, seed=seed, **kwargs))
        if len(chunks) == 1:
            return chunks[0]
        return self._join_chunks(name, [s for s, _ in chunks], [h for _, h in chunks])

    def train_in_chunks(self, name: str, module: Any, x: Any, y: Any, config: Any, num_members: int,
                        chunk: int | None = None, seed: int = 0, *, per_member_metrics: bool = False,
                        **train_kwargs: Any) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
        """The one place where experiments train members: ``(state, history)`` chunk by chunk.

        ``x: (n, ...)``, ``y: (n, ...)``; ``config``: a :class:`eqlib.ensemble.TrainConfig`; member m
        is a pure function of ``(seed, m)``. ``train_kwargs`` (``group``, ``on_epoch_end``,
        ``checkpoint_every``, ``progress`` …) go to :func:`eqlib.ensemble.train_ensemble`.

        * A plain run is :func:`eqlib.ensemble.train_in_chunks` with checkpoints
          ``checkpoints/<name>`` (or ``<name>_members<first>-<last>`` per chunk).
        * A member-range run (``member_range=(a, b)``, ``python -m eqlib run … --members a:b``) trains
          members ``a … b−1`` (those below ``num_members`` when an ensemble trained earlier in the run
          has b members or more — so one array splits ensembles of different sizes; otherwise a
          range past the last member is a :class:`MemberRangeError`), stores their parameters and
          history as ``ranges/<name>/members<a>-<b−1>.npz`` and raises :class:`MembersPending`: the
          code that follows needs every member, and :meth:`step` leaves it to the merge (a range
          stored before is yielded as a stand-in, so that a step that trains several ensembles
          reaches all of them). ``on_epoch_end`` metrics are either per member
          (``per_member_metrics=True``: every entry has the member axis first, or is the same for
          all members, such as the epoch) and computed in the task, or — the default, e.g. for
          ensemble statistics — left to the merge, which calls ``on_epoch_end`` on the joined
          members from parameter snapshots that the task stores at every epoch.
        * A merge run (``merge=True``, ``python -m eqlib merge``) checks that the stored ranges tile
          ``0 … num_members−1`` and yields one chunk: all members, joined.
        """
        from eqlib import distributed
        from eqlib.ensemble import train_in_chunks

        train_kwargs.setdefault("progress", self.show_progress)
        callback = train_kwargs.get("on_epoch_end")
        if callback is not None and distributed.process_count() > 1:  # the callback reads numpy arrays
            train_kwargs["on_epoch_end"] = lambda epoch, params: callback(epoch, distributed.gather(params))
        if self.merging:
            yield self._merged(name, module, x, config, num_members, seed, callback)
            return
        members = None
        if self.member_range is not None:
            a, b = self.member_range
            self.ranges.setdefault(name, {"members": num_members})
            largest = max(info["members"] for info in self.ranges.values())
            if b > largest:
                raise MemberRangeError(f"members {a}:{b} run past the {num_members} members of the "
                                       f"ensemble {name!r} (members 0:{num_members}); end the range at "
                                       f"≤ {largest}")
            if a >= num_members:
                self.log(f"{name}: members {a}:{b} — this ensemble has only {num_members}: nothing to train")
                raise MembersPending(name)
            if b > num_members:  # a smaller ensemble than one trained before: its members a … M−1
                self.log(f"{name}: members {a}:{b} — this ensemble has {num_members}: training {a}:{num_members}")
                b = num_members
            path = self.range_dir(name) / f"members{a}-{b - 1}.npz"
            self._range_calls += 1
            stored = self._from_writer(lambda: load_arrays(path) if path.is_file() else None)
            if stored is not None:  # trained before: the task's members stand in for the ensemble
                self.log(f"{name}: members {a}:{b} stored in {path.relative_to(self.dir)}")
                yield self._joined(name, [stored], module, x, config, seed, None)
                return
            members = range(a, b)
            if callback is not None and not per_member_metrics:
                train_kwargs["on_epoch_end"] = _snapshot
        states, histories = [], []
        chunks = train_in_chunks(module, x, y, config, num_members, chunk, seed, self.checkpoint_path, name,
                                 members=members, **train_kwargs)
        if members is None:
            for state, history in chunks:
                if distributed.process_count() > 1:  # global arrays: every process reads all members
                    state = state._replace(params=distributed.gather(state.params))
                yield state, history
            return
        self._in_train = True
        try:
            for state, history in chunks:
                states.append(state._replace(params=distributed.gather(state.params)))
                histories.append(history)
        except Exception:
            self.failed_training = name  # a failure in training is an error of the task, never skipped
            raise
        finally:
            self._in_train = False
        self._store_range(name, path, states, histories, per_member_metrics or callback is None)
        self._new_range = True
        raise MembersPending(name)

    def _join_chunks(self, name: str, states: list, histories: list[dict]):
        """Chunks (or ranges) of consecutive members as one ``(state, history)``; params as numpy."""
        import jax

        params = jax.tree_util.tree_map(lambda *leaves: np.concatenate([np.asarray(l) for l in leaves]),
                                        *[s.params for s in states])
        sizes = [len(s.member_ids) for s in states]
        # chunks of one plain run: per-member metrics join; any other entry must agree between chunks
        history = _join_histories(histories, sizes, True, name)
        ids = tuple(m for s in states for m in s.member_ids)
        return states[0]._replace(params=params, opt_state=None, member_ids=ids), history

    def _store_range(self, name: str, path: Path, states: list, histories: list[dict],
                     per_member: bool) -> None:
        """Write the trained members of a range task: ``params/leaf_i (m, ...)``, ``history/<key>``."""
        import jax

        leaves = [np.concatenate([np.asarray(l) for l in parts])
                  for parts in zip(*[jax.tree_util.tree_leaves(s.params) for s in states])]
        sizes = [len(s.member_ids) for s in states]
        history = _join_histories(histories, sizes, per_member, name)
        arrays = {f"params/leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
        arrays.update({f"history/{k}": v for k, v in history.items()})
        ids = [m for s in states for m in s.member_ids]
        arrays["member_ids"] = np.asarray(ids)
        arrays["epoch"] = np.asarray(states[-1].epoch)
        arrays["per_member_metrics"] = np.asarray(per_member)
        if self.writer:
            save_arrays(path, arrays)
        self.log(f"{name}: members {ids[0]}:{ids[-1] + 1} stored in {path.relative_to(self.dir)}")

    def _merged(self, name: str, module: Any, x: Any, config: Any, num_members: int, seed: int,
                callback: Callable | None) -> tuple[Any, dict[str, np.ndarray]]:
        """All members of ``name`` from the stored ranges (checked to tile ``0 … num_members−1``)."""
        import jax

        from eqlib import distributed
        from eqlib.ensemble import EnsembleState, init_ensemble

        def listing() -> dict[str, np.ndarray]:
            found = _range_files(self.range_dir(name))
            return {"ranges": np.asarray([(a, b) for a, b, _ in found], dtype=np.int64).reshape(-1, 2)}

        ranges = [tuple(int(v) for v in r) for r in self._from_writer(listing)["ranges"]]
        if not ranges:
            raise MemberRangeError(
                f"{name}: no member ranges are stored under {display_path(self.range_dir(name), self.root)}; "
                f"train them first:  python -m eqlib run {self.experiment} --preset {self.preset} "
                "--members a:b")
        check_tiling(ranges, num_members, name)
        parts = []
        for a, b in ranges:
            path = self.range_dir(name) / f"members{a}-{b}.npz"
            parts.append(self._from_writer(lambda path=path: load_arrays(path)))
        self.log(f"{name}: joining members 0:{num_members} from {len(ranges)} stored range(s)")
        return self._joined(name, parts, module, x, config, seed, callback)

    def _joined(self, name: str, parts: list[dict[str, np.ndarray]], module: Any, x: Any, config: Any,
                seed: int, callback: Callable | None) -> tuple[Any, dict[str, np.ndarray]]:
        """Stored ranges of consecutive members (``ranges/…npz`` contents) as one ``(state, history)``.

        Parameter snapshots are turned into the ``on_epoch_end`` metrics of the joined members by
        calling ``callback`` at every stored epoch; without a callback they are dropped (a task's
        stand-in).
        """
        import jax

        from eqlib import distributed
        from eqlib.ensemble import EnsembleState, init_ensemble

        treedef = jax.tree_util.tree_structure(
            init_ensemble(module, x, seed=seed, config=config, member_ids=(0,)).params)
        leaves = [np.concatenate([p[f"params/leaf_{i:05d}"] for p in parts])
                  for i in range(treedef.num_leaves)]
        params = jax.tree_util.tree_unflatten(treedef, leaves)
        stored_per_member = {bool(p["per_member_metrics"]) for p in parts}
        if len(stored_per_member) != 1:
            raise MemberRangeError(f"{name}: some ranges stored per-member metrics and some snapshots")
        histories = [{k.split("/", 1)[1]: v for k, v in p.items() if k.startswith("history/")} for p in parts]
        sizes = [len(p["member_ids"]) for p in parts]
        history = _join_histories(histories, sizes, stored_per_member.pop(), name)
        snaps = [history.pop(k) for k in sorted(k for k in history if k.startswith(_SNAPSHOT))]  # (K, M, ...)
        if snaps and callback is not None:
            metrics: dict[str, list] = {}
            for k, epoch in enumerate(history["epoch"]):
                out = callback(int(epoch), jax.tree_util.tree_unflatten(treedef, [s[k] for s in snaps]))
                for key, value in (out or {}).items():
                    metrics.setdefault(key, []).append(np.asarray(distributed.gather(value)))
            history.update({k: np.asarray(v) for k, v in metrics.items()})
        ids = tuple(int(m) for p in parts for m in p["member_ids"])
        return EnsembleState(params, None, ids, int(parts[0]["epoch"])), history

    def member_report(self) -> str:
        """What a member-range run leaves to do: per ensemble, the stored ranges and missing members."""
        lines = []
        for name, info in self.ranges.items():
            found = [(a, b) for a, b, _ in _range_files(self.range_dir(name))]
            have = np.zeros(info["members"], bool)
            for a, b in found:
                have[a:b + 1] = True
            missing = np.flatnonzero(~have).tolist()
            lines.append(f"  {name}: {info['members']} members; stored "
                         + (", ".join(f"{a}:{b + 1}" for a, b in found) or "none")
                         + (f"; missing {_spans(missing)}" if missing else "; complete"))
        return "\n".join(lines)

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
        if self.member_range is not None:
            raise RuntimeError("a member-range run does not finish: python -m eqlib merge does")
        if not self.writer:  # several processes: only process 0 writes
            self.finished_path = self.dir / "results.json"
            return self.finished_path
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
    member_range: tuple[int, int] | str | None = None,
    merge: bool = False,
    **overrides: Any,
) -> Path:
    """Run experiment ``name`` at ``preset`` (resolved by ``preset_name``) with field overrides.

    Returns the path of the written ``results.json``. Cached steps of an earlier, interrupted run
    with the same config are reused unless ``fresh``.

    Job arrays: with ``member_range=(a, b)`` only members ``a … b−1`` of every ensemble are trained and
    stored (:meth:`Run.train_in_chunks`); whatever needs every member is skipped, nothing is
    finished, a report of the stored and missing ranges is printed, and the path of the run's
    ``ranges/`` directory is returned. Once the tasks have stored ranges that tile every ensemble,
    ``merge=True`` joins them, measures and finishes like a plain run (same results, to float
    tolerance: each member is a pure function of ``(seed, m)``).
    """
    exp = get_experiment(name)
    preset = preset_name(preset, valid=tuple(exp.presets))
    config = apply_overrides(exp.presets[preset], **overrides)
    run = Run(name, preset, config, root, fresh=fresh, verbose=verbose, member_range=member_range, merge=merge)
    if run.member_range is not None:
        return _run_member_range(run, exp, config, overrides)
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


def _run_member_range(run: Run, exp: Experiment, config: Any, overrides: dict[str, Any]) -> Path:
    """A job-array task: every ensemble's members of ``run.member_range``, then a report."""
    a, b = run.member_range
    try:
        exp.run_fn(run, config)
    except MemberRangeError:
        raise
    except Exception as err:  # noqa: BLE001 - what follows a pending step reads the members it lacks
        if not run.ranges or run.failed_training is not None:
            raise
        reason = "it needs every member" if isinstance(err, MembersPending) else f"{type(err).__name__}: {err}"
        run.log(f"the rest of the experiment is left for the merge ({reason})")
    if not run.ranges and run.resumed_steps:  # the steps that train are cached: merged already
        run.log(f"members {a}:{b}: nothing to train, every step is cached (the run was merged or run whole)")
        return run.dir / "ranges"
    if not run.ranges:
        raise MemberRangeError(f"experiment {run.experiment!r} trained no members through Run.train, so "
                               "it cannot be split into member ranges")
    sets = "".join(f" --set {k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
                   for k, v in overrides.items())
    if run.root.resolve() != default_results_root().resolve():
        sets += f" --results {run.root}"
    report = run.member_report()
    if run.writer:
        print(f"[{run.experiment}/{run.preset}] members {a}:{b} stored. Ensembles:\n{report}\n"
              f"When every ensemble is complete:  python -m eqlib merge {run.experiment} "
              f"--preset {run.preset}{sets}", flush=True)
    return run.dir / "ranges"


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
