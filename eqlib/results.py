"""Results read through names, not strings: a typed accessor over an experiment's result arrays.

An experiment stores flat arrays under keys such as ``mlp_w512_aug/mve_spread/test`` (Ising),
``c16_C4/interval/acc_full/test`` (FashionMNIST) or ``D4/test/mve_osp_D4`` (histology). A
:class:`Schema` per experiment declares which *arms* (trained ensembles, infinite-width
predictions) a run with a given config has, which *metrics* each kind of arm stores, on which
*evaluation sets*, and in which layout; :class:`Results` reads the arrays through it::

    res = Results("ising", *chapter_results("ising"))       # (arrays, meta) of eqlib.runner
    arm = res.arm("mlp_w512_aug")
    arm.ensemble_spread("test")                              # (T, K) array
    arm.mve("mve_spread", "test")["ensemble"]                # an eqlib.metrics.Interval
    arm.interval("slope_spread", "test")                     # Interval from a stored (3,) triple
    res.data("x", "test")                                    # data/x_test

A misspelt arm, metric or set raises :class:`UnknownName` (a ``KeyError``) that lists the valid
names; a metric the schema declares but this run does not store (a preset without the SO(2)
arms, say) raises one that says so. ``tests/test_results.py`` checks every schema against the
stored reference runs and fresh small runs, key for key, so a renamed metric fails a test and
not a chapter build. The on-disk keys and file format are unchanged.

Interval layouts, all read as one type, :class:`eqlib.metrics.Interval` (95 %):

* ``table``: ``(3, 3)`` — rows member mean, full ensemble, ensemble − member; columns estimate,
  low, high (:func:`eqlib.metrics.member_vs_ensemble`); read with :meth:`Arm.mve`;
* ``triple``: ``(..., 3)`` — estimate, low, high on the last axis (a slope, a patch bootstrap);
* ``band``: the estimate under the metric's name, its bounds under ``<metric>_low`` and
  ``<metric>_high`` (a curve over ensemble sizes with bootstrap intervals).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .metrics import Interval, ensemble_sizes

__all__ = ["LEVEL", "MVE_ROWS", "Entry", "Schema", "Results", "Arm", "UnknownName", "schema", "SCHEMAS"]

#: Coverage of every stored interval.
LEVEL = 0.95
#: Rows of a ``table`` interval array.
MVE_ROWS = ("member", "ensemble", "difference")
FORMS = ("array", "table", "triple", "band")

Config = Mapping[str, Any]
When = Callable[[Config, str, "str | None"], bool]


class UnknownName(KeyError, AttributeError):
    """A name the schema does not know (or this run does not store); the message lists valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


def _always(cfg: Config, arm: str, name: str | None) -> bool:
    return True


@dataclass(frozen=True)
class Entry:
    """One stored metric of an arm.

    ``sets``: the evaluation sets it is stored for (None: all of the schema's, ``()``: none — an
    arm-level array such as ``loss``); ``form``: its interval layout (see the module docstring);
    ``when(config, arm, set)``: whether a run with that config stores it (default: always).
    """

    sets: tuple[str, ...] | None = None
    form: str = "array"
    when: When = _always

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")


@dataclass(frozen=True)
class Schema:
    """What one experiment stores.

    ``layout``: how an arm's per-set key is spelt (``"{arm}/{metric}/{set}"`` or
    ``"{arm}/{set}/{metric}"``); arm-level keys are ``"{arm}/{metric}"``. ``kinds``: arm kind →
    metric → :class:`Entry`; ``arms(config)`` → ``{arm: kind}`` of a run; ``data``: names of
    ``data/<name>`` arrays, ``data_per_set`` those stored as ``data/<name>_<set>`` for every set;
    ``top``: other arrays outside the arms, by full key; ``kind_of(arm)``: the kind of an arm
    found in the arrays of a run whose config is not at hand.
    """

    experiment: str
    layout: str
    sets: tuple[str, ...]
    kinds: Mapping[str, Mapping[str, Entry]]
    arms: Callable[[Config], Mapping[str, str]]
    data: tuple[str, ...] = ()
    data_per_set: tuple[str, ...] = ()
    top: tuple[str, ...] = ()
    kind_of: Callable[[str], str] | None = None

    def entries(self, kind: str) -> dict[str, Entry]:
        """The metrics of arm kind ``kind``, bands expanded into ``<m>``, ``<m>_low``, ``<m>_high``."""
        out: dict[str, Entry] = {}
        for name, e in self.kinds[kind].items():
            out[name] = e
            if e.form == "band":
                for side in ("low", "high"):
                    out[f"{name}_{side}"] = Entry(e.sets, "array", e.when)
        return out

    def sets_of(self, entry: Entry) -> tuple[str, ...]:
        return self.sets if entry.sets is None else entry.sets

    def key(self, arm: str, metric: str, set_name: str | None) -> str:
        """The on-disk key of ``metric`` of ``arm`` on ``set_name`` (None: an arm-level array)."""
        if set_name is None:
            return f"{arm}/{metric}"
        return self.layout.format(arm=arm, metric=metric, set=set_name)

    def data_keys(self) -> list[str]:
        return ([f"data/{n}" for n in self.data]
                + [f"data/{n}_{s}" for n in self.data_per_set for s in self.sets])

    def expected_keys(self, config: Config) -> set[str]:
        """Every key a run with ``config`` stores, according to the schema."""
        keys = set(self.top) | set(self.data_keys())
        for arm, kind in self.arms(config).items():
            for metric, e in self.entries(kind).items():
                for s in (self.sets_of(e) or (None,)):
                    if e.when(config, arm, s):
                        keys.add(self.key(arm, metric, s))
        return keys

    def described_keys(self, config: Config) -> set[str]:
        """Every key the schema can name for ``config``, stored or not (``when`` ignored)."""
        keys = set(self.top) | set(self.data_keys())
        for arm, kind in self.arms(config).items():
            for metric, e in self.entries(kind).items():
                keys.update(self.key(arm, metric, s) for s in (self.sets_of(e) or (None,)))
        return keys


def _unknown(what: str, name: Any, valid: Iterable[str], where: str) -> UnknownName:
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    return UnknownName(f"unknown {what} {name!r} {where}{hint}; valid: {', '.join(valid) or '(none)'}")


class Arm:
    """One arm (trained ensemble or infinite-width prediction) of a run; see :class:`Results`."""

    def __init__(self, results: "Results", name: str, kind: str):
        self._results, self.name, self.kind = results, name, kind
        self._entries = results.schema.entries(kind)

    def __repr__(self) -> str:
        return f"Arm({self._results.schema.experiment!r}, {self.name!r}, kind={self.kind!r})"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric name of this kind of arm (bands expanded)."""
        return tuple(self._entries)

    def key(self, metric: str, set_name: str | None = None) -> str:
        """The on-disk key of ``metric`` on ``set_name``, after checking both names."""
        schema = self._results.schema
        if metric not in self._entries:
            raise _unknown("metric", metric, self._entries,
                           f"for a {schema.experiment} arm of kind {self.kind!r}")
        entry = self._entries[metric]
        sets = schema.sets_of(entry)
        if not sets:
            if set_name is not None:
                raise UnknownName(f"{metric!r} is an arm-level array of {self.name!r}: it takes no "
                                  f"evaluation set, got {set_name!r}")
        elif set_name not in sets:
            raise _unknown("evaluation set", set_name, sets, f"for {metric!r}")
        return schema.key(self.name, metric, set_name)

    def has(self, metric: str, set_name: str | None = None) -> bool:
        """True if this run stores ``metric`` on ``set_name`` (names are checked: a typo raises)."""
        return self.key(metric, set_name) in self._results.arrays

    def get(self, metric: str, set_name: str | None = None) -> np.ndarray:
        """The stored array of ``metric`` on ``set_name`` (None for an arm-level array)."""
        key = self.key(metric, set_name)
        try:
            return self._results.arrays[key]
        except KeyError:
            where = "" if set_name is None else f" on {set_name!r}"
            raise UnknownName(f"{metric!r} of {self.name!r}{where} is declared by the "
                              f"{self._results.schema.experiment} schema but not stored in this run "
                              f"(key {key!r}: its config does not produce it)") from None

    def __getattr__(self, metric: str) -> Callable[..., np.ndarray]:
        """``arm.ensemble_spread("test")`` is ``arm.get("ensemble_spread", "test")``."""
        if metric.startswith("_"):
            raise AttributeError(metric)
        if metric not in self._entries:
            raise _unknown("metric", metric, self._entries, f"for a {self._results.schema.experiment} arm")
        return lambda set_name=None: self.get(metric, set_name)

    def _form(self, metric: str, *forms: str) -> str:
        """The layout of ``metric`` (already checked by :meth:`key`), which must be one of ``forms``."""
        form = self._entries[metric].form
        if form not in forms:
            raise UnknownName(f"{metric!r} is stored as {form!r}, not as {' or '.join(forms)}")
        return form

    def mve(self, metric: str, set_name: str | None = None) -> dict[str, Interval]:
        """Members against the full ensemble from a ``(3, 3)`` table: ``{"member", "ensemble",
        "difference"}`` → :class:`~eqlib.metrics.Interval` (floats)."""
        self.key(metric, set_name)
        self._form(metric, "table")
        table = np.asarray(self.get(metric, set_name), dtype=np.float64)
        if table.shape != (3, 3):
            raise ValueError(f"{self.key(metric, set_name)!r} has shape {table.shape}, a table is (3, 3)")
        return {row: Interval(float(r[0]), float(r[1]), float(r[2]), LEVEL)
                for row, r in zip(MVE_ROWS, table)}

    def interval(self, metric: str, set_name: str | None = None, row: str | None = None) -> Interval:
        """The stored 95 % interval of ``metric``: a ``triple`` (last axis estimate, low, high), a
        ``band`` (``<metric>``, ``_low``, ``_high``) or, with ``row``, one row of a ``table``."""
        self.key(metric, set_name)
        form = self._form(metric, "table", "triple", "band")
        if form == "table":
            if row not in MVE_ROWS:
                raise _unknown("row", row, MVE_ROWS, f"of the table {metric!r}")
            return self.mve(metric, set_name)[row]
        if row is not None:
            raise ValueError(f"row={row!r} applies to tables only; {metric!r} is a {form}")
        if form == "triple":
            a = np.asarray(self.get(metric, set_name), dtype=np.float64)
            if a.shape[-1:] != (3,):
                raise ValueError(f"{self.key(metric, set_name)!r} has shape {a.shape}, a triple is (..., 3)")
            return Interval(*(a[..., i] if a.ndim > 1 else float(a[i]) for i in range(3)), LEVEL)
        return Interval(self.get(metric, set_name), self.get(f"{metric}_low", set_name),
                        self.get(f"{metric}_high", set_name), LEVEL)


@dataclass
class Results:
    """Typed access to one run's arrays: ``Results(experiment, arrays, meta)``.

    ``arrays``/``meta`` as returned by :func:`eqlib.runner.chapter_results`,
    :func:`~eqlib.runner.stored_results` or :func:`~eqlib.runner.latest_results`; the arms come
    from ``meta["config"]`` (or ``config``). Without either (an experiment's own summary, before
    the run is written) the arms are the first path segments of the stored keys.
    """

    experiment: str
    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    schema: Schema = field(init=False)

    def __post_init__(self):
        self.schema = schema(self.experiment)
        if self.config is None and self.meta is not None:
            self.config = self.meta.get("config")

    @property
    def arms(self) -> dict[str, str]:
        """``{arm: kind}`` of this run: from its config, else from the stored keys."""
        if self.config is not None:
            return dict(self.schema.arms(self.config))
        skip = {"data", *self.schema.top}
        found = dict.fromkeys(k.split("/", 1)[0] for k in self.arrays if "/" in k)
        return {a: self.schema.kind_of(a) for a in found if a not in skip}

    @property
    def sets(self) -> tuple[str, ...]:
        return self.schema.sets

    @property
    def summary(self) -> Mapping[str, Any]:
        if self.meta is None or "summary" not in self.meta:
            raise ValueError("these Results were made without meta: there is no summary")
        return self.meta["summary"]

    def arm(self, name: str) -> Arm:
        """The arm ``name`` (e.g. ``"mlp_w512_aug"``, ``"c16_C4"``, ``"D4"``)."""
        arms = self.arms
        if name not in arms:
            raise _unknown("arm", name, arms, f"in this {self.experiment} run")
        return Arm(self, name, arms[name])

    def data(self, name: str, set_name: str | None = None) -> np.ndarray:
        """``data/<name>`` or, with a set, ``data/<name>_<set>``."""
        s = self.schema
        if set_name is None:
            if name not in s.data:
                raise _unknown("data array", name, s.data, f"of {self.experiment}"
                               + (f" (per-set: {', '.join(s.data_per_set)})" if s.data_per_set else ""))
            return self._stored(f"data/{name}")
        if name not in s.data_per_set:
            raise _unknown("per-set data array", name, s.data_per_set, f"of {self.experiment}")
        if set_name not in s.sets:
            raise _unknown("evaluation set", set_name, s.sets, f"of {self.experiment}")
        return self._stored(f"data/{name}_{set_name}")

    def array(self, name: str) -> np.ndarray:
        """A top-level array outside the arms and ``data/`` (``times``, ``sizes``, ``angles`` …)."""
        if name not in self.schema.top:
            raise _unknown("top-level array", name, self.schema.top, f"of {self.experiment}")
        return self._stored(name)

    def _stored(self, key: str) -> np.ndarray:
        try:
            return self.arrays[key]
        except KeyError:
            raise UnknownName(f"{key!r} is declared by the {self.experiment} schema but not stored in this "
                              "run (a run written by an older version of its experiment?)") from None

    def get(self, arm: str, metric: str, set_name: str | None = None) -> np.ndarray:
        return self.arm(arm).get(metric, set_name)

    def interval(self, arm: str, metric: str, set_name: str | None = None,
                 row: str | None = None) -> Interval:
        return self.arm(arm).interval(metric, set_name, row)

    def mve(self, arm: str, metric: str, set_name: str | None = None) -> dict[str, Interval]:
        return self.arm(arm).mve(metric, set_name)


# ---------------------------------------------------------------------------------- schemas

def _e(names: Iterable[str], **kw) -> dict[str, Entry]:
    return {n: Entry(**kw) for n in names}


def _ising() -> Schema:
    from .experiments.ising import EVAL_SETS, SLOPE_MIN_SUBENSEMBLES, SPIN_SETS

    def members(cfg: Config, arm: str) -> int:
        return cfg["members"] if arm.startswith("mlp") else cfg["cnn_members"]

    def several(cfg, arm, s):
        return members(cfg, arm) >= 2

    def slope(cfg, arm, s):
        m = members(cfg, arm)
        return int(np.sum(m // ensemble_sizes(cfg["ensemble_sizes"], m) >= SLOPE_MIN_SUBENSEMBLES)) >= 2

    trained = {
        **_e(("member_spread", "member_rel_spread", "ensemble_spread_std", "ensemble_rel_spread_std",
              "member_eqerr", "ensemble_eqerr", "ensemble_orbit_output")),
        **_e(("ensemble_spread", "ensemble_rel_spread"), form="band"),
        **_e(("mve_spread", "mve_rel_spread"), form="table", when=several),
        **_e(("slope_spread", "slope_rel_spread"), form="triple", when=slope),
        **_e(("member_rmse", "ensemble_rmse"), sets=SPIN_SETS),
        "mve_rmse": Entry(SPIN_SETS, "table", several),
        **_e(("time", "loss", "sizes", "seed", "first_epoch_step_loss"), sets=()),
        "slope_sizes": Entry((), "array", slope),
    }
    ntk = {**_e(("mean", "mean_spread", "variance", "expected_sq_spread", "predicted_spread",
                 "predicted_spread_std", "predicted_rel_spread", "predicted_rel_spread_std")),
           "rmse": Entry(SPIN_SETS), **_e(("time", "sizes"), sets=())}

    def arms(cfg: Config) -> dict[str, str]:
        out = {f"mlp_w{w}_aug": "trained" for w in cfg["widths"]}
        out.update({f"mlp_w{cfg['plain_width']}_plain": "trained", "cnn_aug": "trained",
                    "cnn_plain": "trained"})
        out.update({f"ntk_mlp_{m}": "ntk" for m in ("aug", "plain")})
        if cfg["cnn_ntk"]:
            out.update({f"ntk_cnn_{m}": "ntk" for m in ("aug", "plain")})
        return out

    return Schema("ising", "{arm}/{metric}/{set}", EVAL_SETS, {"trained": trained, "ntk": ntk}, arms,
                  data=("x", "y", "t_train", "energy_mean", "energy_std"), data_per_set=("x", "y", "removed"),
                  top=("times",), kind_of=lambda arm: "ntk" if arm.startswith("ntk_") else "trained")


def _fashion_mnist() -> Schema:
    from .experiments.fashion_mnist import EVAL_SETS, STATISTICS

    def so2(cfg: Config, arm: str, s) -> bool:
        return (bool(cfg["cont_groups"]) and arm.startswith(f"c{cfg['cont_width']}_")
                and (s is None or s in cfg["cont_sets"]))

    test = ("test",)
    stats = tuple(STATISTICS)
    arm = {
        **_e(("member_osp", "member_consistent", "member_chance", "member_hist", "ensemble_osp",
              "ensemble_osp_std", "ensemble_consistent", "ensemble_chance", "ensemble_hist", "member_spread",
              "ensemble_spread", "ensemble_spread_std", "member_kl", "ensemble_kl", "ensemble_kl_std",
              "member_rel_spread", "ensemble_rel_spread", "ensemble_rel_spread_std", "logits")),
        **_e((f"epoch/{m}" for m in ("member_osp", "ensemble_osp", "ensemble_consistent", "member_spread",
                                      "ensemble_spread", "member_kl", "ensemble_kl", "member_rel_spread",
                                      "ensemble_rel_spread"))),
        **_e((f"interval/{s}" for s in stats), form="table"),
        **_e(("member_acc", "member_acc_orbit", "ensemble_acc", "ensemble_acc_orbit", "member_acc_full",
              "epoch/member_acc", "epoch/ensemble_acc"), sets=test),
        **_e(("interval/acc", "interval/acc_orbit", "interval/acc_full"), sets=test, form="table"),
        **_e(("so2/logits", "so2/member_agreement", "so2/ensemble_agreement"), when=so2),
        **_e((f"so2/interval/{s}" for s in stats), form="table", when=so2),
        **_e(("so2/member_acc", "so2/ensemble_acc"), sets=test, when=so2),
        **_e(("so2/interval/acc", "so2/interval/acc_orbit"), sets=test, form="table", when=so2),
        **_e(("loss", "epochs", "first_epoch_step_loss", "sizes"), sets=()),
    }

    def arms(cfg: Config) -> dict[str, str]:
        out = {f"c{w}_{aug}": "ensemble" for w in cfg["widths"] for aug in ("C4", "none")}
        out.update({f"c{cfg['cont_width']}_{g}": "ensemble" for g in cfg["cont_groups"]})
        return out

    return Schema("fashion_mnist", "{arm}/{metric}/{set}", EVAL_SETS, {"ensemble": arm}, arms,
                  top=("angles", "train_class_counts", "y_test", "test_idx", "mnist_idx"),
                  kind_of=lambda arm: "ensemble")


def _histology() -> Schema:
    from .experiments.histology import EVAL_GROUPS, EVAL_SETS, STATISTICS, training_modes, HistologyConfig

    def several(cfg, arm, s):
        return cfg["members"] > 1

    labelled = ("test", "jitter")
    mode: dict[str, Entry] = {
        **_e(("margin", "agreement", "member_pred", "ensemble_pred", "logits", "logits_index")),
        **_e(("loss", "first_epoch_step_loss"), sets=())}
    for g in EVAL_GROUPS:
        mode.update(_e((f"ensemble_counts_{g}", f"ensemble_kl_{g}")))
        for stat in STATISTICS:
            mode[f"member_{stat}_{g}"] = Entry()
            mode[f"{stat}_{g}"] = Entry(form="band")
            mode[f"mve_{stat}_{g}"] = Entry(form="table", when=several)
    mode.update({**_e(("member_accuracy", "patch_accuracy", "member_patch_accuracy"), sets=labelled),
                 "accuracy": Entry(labelled, "band"), "mve_accuracy": Entry(labelled, "table", several),
                 **_e(("accuracy_patches", "member_accuracy_patches"), sets=labelled, form="triple")})

    def arms(cfg: Config) -> dict[str, str]:
        return {m: "mode" for m in training_modes(HistologyConfig(augmentations=tuple(cfg["augmentations"])))}

    return Schema("histology", "{arm}/{set}/{metric}", EVAL_SETS, {"mode": mode}, arms,
                  data=("mean", "std", "y", "patch", "held_out", "files", "test_index", "y_test",
                        "patch_test", "n_train", "n_eval"), top=("sizes",), kind_of=lambda arm: "mode")


def _tour() -> Schema:
    from .experiments.tour import DATA_SETS, MODES

    mode = {**_e(("member_outputs", "member_spread", "ensemble_spread", "fluctuation", "ntk_mean",
                  "ntk_spread", "sigma_blocks", "var_w_blocks")),
            "spread_interval": Entry(form="table"),
            **_e(("loss", "first_epoch_step_loss", "ntk_times"), sets=())}

    def arms(cfg: Config) -> dict[str, str]:
        return {**{m: "mode" for m in MODES}, "comparison": "comparison"}

    return Schema("tour", "{arm}/{metric}_{set}", DATA_SETS,
                  {"mode": mode, "comparison": {"ensemble_spread_ratio": Entry(form="table")}}, arms,
                  kind_of=lambda arm: "comparison" if arm == "comparison" else "mode")


_BUILDERS: dict[str, Callable[[], Schema]] = {"tour": _tour, "ising": _ising, "fashion_mnist": _fashion_mnist,
                                              "histology": _histology}
#: The experiments that have a schema.
SCHEMAS: tuple[str, ...] = tuple(_BUILDERS)


@lru_cache(maxsize=None)
def schema(experiment: str) -> Schema:
    """The :class:`Schema` of ``experiment`` (built on first use: it reads the experiment's constants)."""
    if experiment not in _BUILDERS:
        raise _unknown("experiment", experiment, _BUILDERS, "with a results schema")
    return _BUILDERS[experiment]()
