"""Read run records into pandas and reduce them to table cells (mean ± std over seeds).

The record store (:class:`bioreg.results.records.RecordStore`) holds one JSON
document per ``<name>/<config_key>/seed<k>``. :func:`load_records` turns a
``results_dir`` into two frames:

* ``runs``: one row per record file (``name, config_key, seed, status, path, error``);
* ``values``: the tidy frame, one row per numeric leaf of a record
  (``name, config_key, seed, status, metric, value``), where ``metric`` is the
  dotted path inside the record (``summary.test_acc``,
  ``summary.corruption_acc.fog``, ``extra.attacks.linf.fgsm.acc``,
  ``extra.activation_stats.48.sparsity``, ``train.acc``, ``best_val_acc`` …).

:func:`select_runs` picks, for each (experiment, seed) a table asks for, the one
completed record that feeds its cells, and reports everything it leaves out:
failed runs, duplicates (two completed records for one experiment and seed under
different config keys — they are *excluded* from the cell and listed, never
averaged, unless the key is pinned), seeds outside the table's list, and runs of
another protocol (a record's ``protocol`` field: a run under ``protocol=authors``,
selected on the test set, never feeds a thesis-protocol cell, and the reverse; both
are listed).

Cells (:func:`cell_stats`) are the mean and the sample standard deviation
(``ddof=1``) over the seeds that have a value; see ``docs/decisions/pipeline.md``
for why ``ddof=1`` (the theses do not say which estimator they print).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bioreg.results.records import (
    DEFAULT_PROTOCOL,
    INCOMPLETE,
    PROTOCOLS,
    UNREADABLE,
    RecordStore,
    failure_text,
    protocol_label,
    record_protocol,
)

__all__ = [
    "METRIC_SECTIONS", "STD_DDOF", "Records", "Selection", "CellStats", "flatten", "load_records",
    "records_from_dicts", "select_runs", "expected_protocol", "cell_stats", "Metric", "parse_metric",
    "dataset_of", "parse_pins",
    "add_record_options", "records_from_args",
]

#: record sections whose numeric leaves become metrics (plus the scalar fields in ``TOP_LEVEL``)
METRIC_SECTIONS = ("summary", "train", "extra", "metrics")
TOP_LEVEL = ("best_val_acc", "best_epoch", "wall_time_s")
#: the standard deviation in every cell is the sample standard deviation (n - 1 in the denominator)
STD_DDOF = 1


def flatten(d: Mapping[str, Any] | Sequence[Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping as ``{"a.b.c": value}``; list items by position
    (``extra.noise.acc.3`` = the accuracy at the 4th noise level); strings and booleans are skipped."""
    out: dict[str, float] = {}
    items = d.items() if isinstance(d, Mapping) else enumerate(d)
    for k, v in items:
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) or (isinstance(v, (list, tuple)) and not isinstance(v, str)):
            out.update(flatten(v, path))
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, (int, float)):
            out[path] = float(v)
    return out


def record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """All metric paths of one record (see the module docstring)."""
    out: dict[str, float] = {}
    for sec in METRIC_SECTIONS:
        if isinstance(record.get(sec), Mapping):
            out.update(flatten(record[sec], sec))
    for k in TOP_LEVEL:
        v = record.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


@dataclass
class Records:
    """The records of one ``results_dir``: ``runs`` (one row per record) and the tidy ``values``."""

    runs: pd.DataFrame
    values: pd.DataFrame
    root: Path | None = None
    #: the record documents by file path (what each ``runs`` row was read from)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _index: dict[tuple[str, str, int], dict[str, float]] | None = field(default=None, repr=False)

    def subset(self, paths: Iterable[str]) -> Records:
        """The records read from ``paths`` only (same root): e.g. the runs that follow a protocol."""
        keep = {str(p) for p in paths}
        runs = self.runs[self.runs["path"].isin(keep)].reset_index(drop=True)
        ids = set(zip(runs["name"], runs["config_key"], runs["seed"], strict=True))
        mask = [(n, k, s) in ids for n, k, s in zip(self.values["name"], self.values["config_key"],
                                                     self.values["seed"], strict=True)]
        return Records(runs=runs, values=self.values[mask].reset_index(drop=True), root=self.root,
                       docs={p: d for p, d in self.docs.items() if p in keep})

    def metrics(self, name: str, key: str, seed: int) -> dict[str, float]:
        """``{metric path: value}`` of one record (empty if there is none)."""
        if self._index is None:
            self._index = {}
            for (n, k, s), g in self.values.groupby(["name", "config_key", "seed"], sort=False):
                self._index[(str(n), str(k), int(s))] = dict(zip(g["metric"], g["value"], strict=True))
        return dict(self._index.get((name, key, int(seed)), {}))

    def unreadable(self) -> list[tuple[str, str]]:
        """``(path, error)`` of every file that is not a record
        (:func:`bioreg.results.records.read_record`)."""
        bad = self.runs[self.runs["status"] == UNREADABLE]
        return [(str(p), str(e)) for p, e in zip(bad["path"], bad["error"], strict=True)]

    def unreadable_lines(self) -> list[str]:
        """One line per unreadable file, for the table scripts to print (nothing when there is none)."""
        bad = self.unreadable()
        if not bad:
            return []
        head = (
            f"warning: {len(bad)} file(s) in {self.root or 'the results'} are not run records and are left "
            "out (listed as unreadable; move or delete them):")
        return [head] + [f"  unreadable: {p}: {e}" for p, e in bad]


RUN_COLUMNS = ["name", "config_key", "seed", "status", "path", "error", "finished", "data", "reading",
               "selected_on"]


def dataset_of(record: Mapping[str, Any]) -> str:
    """Short name of the data set a run trained on, from its config's data module:
    ``bioreg.data.cifar10.CIFAR10DataModule`` -> ``cifar10``, ``…DigitsDataModule`` -> ``digits``
    (``?`` when the record has no config)."""
    cfg = record.get("config")
    data = cfg.get("data") if isinstance(cfg, Mapping) else None
    target = str((data.get("_target_") if isinstance(data, Mapping) else None) or "")
    cls = target.rpartition(".")[2].lower()
    return cls.removesuffix("datamodule") or "?"


def parse_pins(items: Iterable[str]) -> dict[str, str]:
    """``--pin EXPERIMENT=CONFIG_KEY`` options as a mapping; a malformed one is an error."""
    pins = {}
    for it in items:
        name, sep, key = it.partition("=")
        if not sep or not name or not key:
            raise ValueError(f"--pin {it!r}: expected EXPERIMENT=CONFIG_KEY")
        pins[name] = key
    return pins
VALUE_COLUMNS = ["name", "config_key", "seed", "status", "metric", "value"]


def records_from_dicts(items: Iterable[tuple[str, Mapping[str, Any]]], root: Path | None = None) -> Records:
    """Build :class:`Records` from ``(path, record)`` pairs (what :class:`RecordStore` iterates)."""
    runs, values, docs = [], [], {}
    for path, rec in items:
        p = Path(path)
        docs[str(path)] = dict(rec)
        # identity from the record; the path is the fallback (a foreign or unreadable file)
        name = rec.get("name", p.parent.parent.name)
        key = rec.get("config_key", p.parent.name)
        seed = rec.get("seed")
        if seed is None:
            stem = p.stem
            seed = int(stem[4:]) if stem.startswith("seed") and stem[4:].isdigit() else -1
        status = str(rec.get("status", "unknown"))
        runs.append({"name": str(name), "config_key": str(key), "seed": int(seed), "status": status,
                     "path": str(path),
                     "error": failure_text(rec) if status == "failed" else rec.get("error"),
                     "finished": rec.get("finished"),
                     "data": dataset_of(rec), **record_protocol(rec)})
        for m, val in record_metrics(rec).items():
            values.append({"name": str(name), "config_key": str(key), "seed": int(seed), "status": status,
                           "metric": m, "value": val})
    runs_df = pd.DataFrame(runs, columns=RUN_COLUMNS).astype({"seed": "int64"})
    values_df = pd.DataFrame(values, columns=VALUE_COLUMNS).astype({"seed": "int64", "value": "float64"})
    return Records(runs=runs_df, values=values_df, root=root, docs=docs)


def add_record_options(ap: Any) -> None:
    """The options by which the table scripts choose their records: ``--results-dir``, ``--pin``,
    ``--data``."""
    ap.add_argument("--results-dir", default="results/runs", help="run records (default: results/runs)")
    ap.add_argument("--pin", action="append", default=[], metavar="EXPERIMENT=CONFIG_KEY",
                    help="use only this config key for the experiment (resolves duplicates)")
    ap.add_argument("--data", default=None, metavar="NAME",
                    help="only runs trained on this data set (cifar10, digits); default: all")


def records_from_args(args: Any) -> tuple[Records, dict[str, str]]:
    """The records and pins :func:`add_record_options` asked for (``ValueError`` on bad input)."""
    return load_records(args.results_dir, data=args.data), parse_pins(args.pin)


def load_records(results_dir: str | Path, data: str | None = None) -> Records:
    """Read every ``<results_dir>/<name>/<config_key>/seed<k>.json`` (an absent folder gives no records).

    ``data`` keeps only the runs trained on that data set (:func:`dataset_of`: ``cifar10``,
    ``digits``), so that quick digits runs of a thesis experiment and its real CIFAR-10 runs can
    share a ``results_dir`` without becoming duplicates of each other.
    """
    root = Path(results_dir)
    # a file that is not a record (truncated, not JSON, not a JSON object) has status "unreadable"
    items = [(str(p), r) for p, r in RecordStore(root)] if root.is_dir() else []
    if data:
        known = sorted({dataset_of(r) for _, r in items} - {"?"})
        items = [(p, r) for p, r in items if dataset_of(r) == data]
        if not items and known:
            raise ValueError(
                f"no records trained on data {data!r} in {root}; its records are on: {', '.join(known)}")
    return records_from_dicts(items, root=root)


# ----------------------------------------------------------------------------- run selection


@dataclass
class Selection:
    """Which record feeds each (experiment, seed) of a table, and what was left out and why."""

    chosen: dict[tuple[str, int], str] = field(default_factory=dict)  # (name, seed) -> config_key
    duplicates: list[tuple[str, int, list[str]]] = field(default_factory=list)
    datasets: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, config_key) -> data set
    failed: list[dict[str, Any]] = field(default_factory=list)
    ignored_seeds: list[tuple[str, int, str]] = field(default_factory=list)
    ignored_pinned: list[tuple[str, int, str]] = field(default_factory=list)
    #: ``(name, protocol label, seeds)`` of completed runs left out because they followed another protocol
    other_protocol: list[tuple[str, str, list[int]]] = field(default_factory=list)
    #: the protocol each experiment's cells were taken from (``{"reading", "selected_on"}``)
    protocols: dict[str, dict[str, str]] = field(default_factory=dict)

    def notes(self) -> list[str]:
        out = []
        for name, label, seeds in self.other_protocol:
            want = protocol_label(self.protocols.get(name, DEFAULT_PROTOCOL))
            out.append(f"other protocol: {name} seed(s) {', '.join(map(str, seeds))} ran under protocol "
                       f"{label}; left out of these {want} cells (never mixed; `make table-<id> "
                       "PROTOCOL=...` shows them)")
        for name, seed, keys in self.duplicates:
            data = [self.datasets.get((name, k), "?") for k in keys]
            shown = ", ".join(f"{k} (data: {d})" for k, d in zip(keys, data, strict=True))
            hint = (f"choose the data set with --data ({' or '.join(sorted(set(data)))}), "
                    if len(set(data)) > 1
                    else "")
            out.append(f"duplicate: {name} seed {seed} has completed records under config keys {shown}; "
                       f"excluded from the cell ({hint}keep one, or pin a key with --pin {name}={keys[0]})")
        for f in self.failed:
            tail = " (a completed record of this seed is used)" if f["superseded"] else ""
            if f["status"] == UNREADABLE:
                out.append(f"unreadable: {f['name']} seed {f['seed']} [{f['config_key']}]: {f.get('path')}: "
                           f"{f['error']}{tail}")
                continue
            if f["status"] in INCOMPLETE:  # stopped by a signal: not a failure, resumes when relaunched
                out.append(f"incomplete: {f['name']} seed {f['seed']} [{f['config_key']}]: {f['status']}, "
                           f"resumes from its last.ckpt when relaunched{tail}")
                continue
            out.append(
                f"failed: {f['name']} seed {f['seed']} [{f['config_key']}]: {f['error'] or 'no error text'}"
                f"{tail}")
        for name, seed, key in self.ignored_seeds:
            out.append(f"ignored: {name} seed {seed} [{key}] is not among this table's seeds")
        for name, seed, key in self.ignored_pinned:
            out.append(f"ignored: {name} seed {seed} [{key}] (another config key is pinned)")
        return out


def expected_protocol(reading: str) -> dict[str, str]:
    """The record ``protocol`` a table reading asks for (``thesis``: selected on validation; ``authors``:
    selected on the test set); a ``ValueError`` naming the readings otherwise."""
    if reading not in PROTOCOLS:
        raise ValueError(f"protocol {reading!r} is invalid; valid: {', '.join(PROTOCOLS)}")
    return dict(PROTOCOLS[reading])


def _split_protocols(runs: pd.DataFrame, protocols: Mapping[str, str], sel: Selection) -> pd.DataFrame:
    """Keep the runs of each experiment's expected protocol; list the completed others in ``sel``."""
    want = {n: expected_protocol(protocols.get(n, "thesis")) for n in set(runs["name"])}
    sel.protocols.update(want)
    if runs.empty:
        return runs
    ok = [want[n] == {"reading": r, "selected_on": s}
          for n, r, s in zip(runs["name"], runs["reading"], runs["selected_on"], strict=True)]
    other = runs[[not k and st == "completed" for k, st in zip(ok, runs["status"], strict=True)]]
    for (name, reading, selected), grp in other.groupby(["name", "reading", "selected_on"], sort=True):
        label = protocol_label({"reading": str(reading), "selected_on": str(selected)})
        sel.other_protocol.append((str(name), label, sorted({int(s) for s in grp["seed"]})))
    return runs[ok]


def select_runs(records: Records, experiments: Iterable[str], seeds: Sequence[int],
                pins: Mapping[str, str] | None = None,
                protocols: Mapping[str, str] | None = None) -> Selection:
    """Choose the completed record for each (experiment, seed); collect failures and duplicates.

    ``pins`` maps an experiment name to the config key to use for it (all other keys
    of that experiment are ignored and listed). ``protocols`` maps an experiment name to the table
    reading its cells come from (``thesis``, the default, or ``authors``, :func:`expected_protocol`):
    records of another protocol are left out and listed (:attr:`Selection.other_protocol`).
    """
    pins = dict(pins or {})
    wanted = set(experiments)
    seeds_set = {int(s) for s in seeds}
    sel = Selection()
    runs = _split_protocols(records.runs[records.runs["name"].isin(wanted)], dict(protocols or {}), sel)
    for (name, seed), grp in runs.groupby(["name", "seed"], sort=True):
        name, seed = str(name), int(seed)
        if name in pins:
            for key in sorted(set(grp["config_key"]) - {pins[name]}):
                sel.ignored_pinned.append((name, seed, key))
            grp = grp[grp["config_key"] == pins[name]]
        done = sorted(set(grp.loc[grp["status"] == "completed", "config_key"]))
        if seed not in seeds_set:
            for key in done:
                sel.ignored_seeds.append((name, seed, key))
            continue
        for _, r in grp[grp["status"] != "completed"].iterrows():
            sel.failed.append(
                {"name": name, "seed": seed, "config_key": r["config_key"], "status": r["status"],
                               "error": r["error"], "superseded": len(done) == 1, "path": r.get("path")})
        if len(done) == 1:
            sel.chosen[(name, seed)] = done[0]
        elif len(done) > 1:
            sel.duplicates.append((name, seed, done))
            if "data" in grp:
                for _, r in grp.iterrows():
                    sel.datasets[(name, str(r["config_key"]))] = str(r["data"])
    return sel


# ----------------------------------------------------------------------------- metric expressions


@dataclass(frozen=True)
class Metric:
    """A per-record quantity: a record path, or a small function of paths (evaluated per seed).

    Spec forms (YAML): ``"summary.test_acc"``; ``{error: PATH}`` = 100 − value (error %);
    ``{percent: PATH}`` = 100 · value (a fraction such as ``train.acc`` as %);
    ``{diff: [A, B]}`` = A − B; ``{absdiff: [A, B]}`` = |A − B|; ``{first_of: [A, B, …]}`` =
    the first that the record has. Arguments may themselves be such forms.
    """

    op: str  # path | error | percent | diff | absdiff | first_of
    path: str = ""
    args: tuple[Metric, ...] = ()

    def __call__(self, m: Mapping[str, float]) -> float | None:
        if self.op == "path":
            v = m.get(self.path)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        vals = [a(m) for a in self.args]
        if self.op == "first_of":
            return next((v for v in vals if v is not None), None)
        if any(v is None for v in vals):
            return None
        if self.op == "error":
            return 100.0 - vals[0]
        if self.op == "percent":
            return 100.0 * vals[0]
        if self.op == "diff":
            return vals[0] - vals[1]
        if self.op == "absdiff":
            return abs(vals[0] - vals[1])
        raise AssertionError(self.op)  # parse_metric admits no other op

    def __str__(self) -> str:
        if self.op == "path":
            return self.path
        return f"{self.op}({', '.join(str(a) for a in self.args)})"


_ARITY = {"error": 1, "percent": 1, "diff": 2, "absdiff": 2, "first_of": None}


def parse_metric(spec: Any) -> Metric:
    """Parse a metric spec (see :class:`Metric`); bad input raises ``ValueError`` naming the valid forms."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str) and spec.strip():
        return Metric("path", path=spec.strip())
    if isinstance(spec, Mapping) and len(spec) == 1:
        (op, arg), = spec.items()
        if op in _ARITY:
            args = arg if isinstance(arg, (list, tuple)) else [arg]
            n = _ARITY[op]
            if (n is not None and len(args) != n) or (n is None and not args):
                raise ValueError(f"metric {op!r} takes {n if n is not None else 'one or more'} argument(s), "
                                 f"got {len(args)}: {spec!r}")
            return Metric(op, args=tuple(parse_metric(a) for a in args))
    raise ValueError(f"bad metric spec {spec!r}: use a record path such as 'summary.test_acc' or one of "
                     f"{{error: P}}, {{percent: P}}, {{diff: [A, B]}}, {{absdiff: [A, B]}}, {{first_of: [A, "
                     f"B, ...]}}")


# ----------------------------------------------------------------------------- cell statistics


@dataclass(frozen=True)
class CellStats:
    mean: float | None
    std: float | None  # None when fewer than two values
    n: int
    n_expected: int
    seeds: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return self.n >= self.n_expected


def cell_stats(values: Mapping[int, float], n_expected: int) -> CellStats:
    """Mean and sample std (``ddof=STD_DDOF``) of ``{seed: value}``."""
    seeds = tuple(sorted(values))
    if not seeds:
        return CellStats(None, None, 0, n_expected, ())
    s = pd.Series([values[k] for k in seeds], dtype="float64")
    std = float(s.std(ddof=STD_DDOF)) if len(s) > STD_DDOF else None
    return CellStats(float(s.mean()), std, len(s), n_expected, seeds)
