"""Where a table's numbers come from: each run's settings, overrides, commit, versions, device and
time, the totals per table, and the exact command that fills its missing runs.

:class:`RunInfo` describes one record file as the report shows it (and links it): whether it
follows the table's published protocol (:func:`bioreg.results.protocol.differences`), its
overrides, and its provenance. :func:`run_overrides` finds a run's command-line overrides — the
``overrides`` field of the record (written since issue 19), else the Hydra run directory's
``.hydra/overrides.yaml``, else the settings in which the run departs from the published
protocol (enough to make the same kind of run; said so) — and drops those that do not define
the run (seed, experiment, paths, Hydra's own). :func:`fill_command` turns the overrides of the
runs present into the ``make reproduce-table-<id>`` line that trains the missing ones with the
same settings (a sweep skips the runs whose record exists).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bioreg.results.aggregate import dataset_of
from bioreg.results.protocol import (
    DEFAULT_READING,
    Difference,
    Protocol,
    Reading,
    data_name,
    differences,
    reading_of,
)
from bioreg.results.records import INCOMPLETE, failure_text

__all__ = ["RunInfo", "run_info", "run_overrides", "Provenance", "provenance", "FillCommand", "fill_command",
           "make_command", "DROP_OVERRIDES"]

#: override keys that do not define a run (identity, places, Hydra itself, progress output)
DROP_OVERRIDES = ("experiment", "seed", "sweep", "results_dir", "ckpt_dir", "data_dir", "on_existing",
                  "hydra", "trainer.enable_progress_bar", "eval.progress")


@dataclass
class RunInfo:
    """One record file of a table's experiments, as the report shows it."""

    path: str
    name: str
    config_key: str
    seed: int
    status: str
    data: str = "?"
    reading: Reading = DEFAULT_READING
    differences: tuple[Difference, ...] = ()  # from the table's published protocol; empty = it follows it
    overrides: tuple[str, ...] = ()
    overrides_from: str = ""  # record | hydra | reconstructed | ""
    commit: str | None = None
    dirty: bool | None = None
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    wall_time_s: float | None = None
    started: str | None = None
    finished: str | None = None
    run_dir: str | None = None
    failure: str | None = None  # why a failed, requeued or interrupted run stopped (one line)
    #: how many launches trained it (``stints`` of the record; 1 for a record from before stints)
    stints: int | None = None
    #: files of the run copied beside the report (record, config, log …), relative to the page
    links: dict[str, str] = field(default_factory=dict)

    @property
    def follows_protocol(self) -> bool:
        return not self.differences

    @property
    def gpu(self) -> bool:
        return bool(self.device) and not str(self.device).lower().startswith("cpu")

    @property
    def settings(self) -> str:
        """The run's data set and what differs from the published protocol, in a few words."""
        diffs = [f"{d.label} {d.actual}" for d in self.differences if d.label != "data set"]
        return " · ".join([data_name(self.data), *diffs])


def _keep(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~").strip()
    key = key.split("/", 1)[0] if key.startswith("hydra/") else key
    return not any(key == d or key.startswith(d + ".") for d in DROP_OVERRIDES)


def run_overrides(record: Mapping[str, Any], diffs: Sequence[Difference] = ()) -> tuple[tuple[str, ...], str]:
    """``(overrides that define the run, where they come from)``; see the module docstring."""
    raw = record.get("overrides")
    source = "record"
    if not isinstance(raw, list):
        raw, source = _hydra_overrides(record.get("run_dir")), "hydra"
    if raw is None:
        raw, source = [d.override for d in diffs if d.override], "reconstructed"
    return tuple(str(o) for o in raw if _keep(str(o))), source


def _hydra_overrides(run_dir: Any) -> list[str] | None:
    if not run_dir:
        return None
    p = Path(str(run_dir)) / ".hydra" / "overrides.yaml"
    try:
        got = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in got] if isinstance(got, list) else None


def run_info(path: str, record: Mapping[str, Any], protocol: Protocol | None) -> RunInfo:
    """Describe one record file (its ``status`` is ``unreadable`` for a file that is not a record)."""
    git = record.get("git") if isinstance(record.get("git"), Mapping) else {}
    checked = protocol is not None and record.get("config") is not None
    diffs = tuple(differences(protocol, record)) if checked else ()  # type: ignore[arg-type]
    overrides, source = run_overrides(record, diffs)
    wall = record.get("wall_time_s")
    seed = record.get("seed")
    status = str(record.get("status", "unknown"))
    stints = record.get("stints")
    return RunInfo(
        path=str(path), name=str(record.get("name", Path(path).parent.parent.name)),
        config_key=str(record.get("config_key", Path(path).parent.name)),
        seed=int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else -1,
        status=status, data=dataset_of(record), reading=reading_of(record),
        differences=diffs, overrides=overrides, overrides_from=source, commit=git.get("commit"),
        dirty=git.get("dirty"), versions=dict(record.get("versions") or {}), device=record.get("device"),
        wall_time_s=float(wall) if isinstance(wall, (int, float)) else None, started=record.get("started"),
        finished=record.get("finished"), run_dir=record.get("run_dir"),
        failure=failure_text(record) if status in ("failed", *INCOMPLETE) else
        (str(record.get("error")) if status == "unreadable" else None),
        stints=len(stints) if isinstance(stints, list) else (1 if isinstance(wall, (int, float)) else None))


# ----------------------------------------------------------------------------- per table


@dataclass
class Provenance:
    """Commits, package versions, devices and compute of a set of runs."""

    runs: int = 0
    commits: list[tuple[str, int]] = field(default_factory=list)  # ("abc1234567 (dirty)", runs)
    versions: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # package -> [(version, runs)]
    devices: list[tuple[str, int]] = field(default_factory=list)
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    first_started: str | None = None
    last_finished: str | None = None


def _counts(items: Iterable[str]) -> list[tuple[str, int]]:
    return Counter(items).most_common()


def provenance(runs: Sequence[RunInfo]) -> Provenance:
    """The provenance of ``runs`` (completed, failed, requeued and interrupted: all used compute)."""
    runs = [r for r in runs if r.status in ("completed", "failed", *INCOMPLETE)]
    pkgs = sorted({k for r in runs for k in r.versions})
    started = [r.started for r in runs if r.started]
    finished = [r.finished for r in runs if r.finished]
    return Provenance(
        runs=len(runs),
        commits=_counts(f"{(r.commit or 'unknown')[:10]}{' (dirty)' if r.dirty else ''}" for r in runs),
        versions={p: _counts(r.versions.get(p, "?") for r in runs) for p in pkgs},
        devices=_counts(str(r.device or ("not recorded (failed run)" if r.status == "failed" else "unknown"))
                        for r in runs),
        gpu_hours=sum(r.wall_time_s or 0.0 for r in runs if r.gpu) / 3600.0,
        cpu_hours=sum(r.wall_time_s or 0.0 for r in runs if not r.gpu) / 3600.0,
        first_started=min(started) if started else None, last_finished=max(finished) if finished else None)


@dataclass(frozen=True)
class FillCommand:
    """The command that trains a table's missing runs, and what its settings come from."""

    command: str
    basis: str  # "the runs' own overrides" | "the published protocol" | ...
    note: str = ""


def make_command(target: str, variables: Mapping[str, str]) -> str:
    """``make <target> VAR=value …`` with values quoted where the shell needs it."""
    parts = [f"make {target}"]
    for k, v in variables.items():
        if v:
            parts.append(f'{k}="{v}"' if re.search(r"[\s\"'$`\\;&|<>*?()\[\]{}]", v) else f"{k}={v}")
    return " ".join(parts)


def fill_command(table_id: str, present: Sequence[RunInfo], missing: Mapping[str, Sequence[int]],
                 experiments: Sequence[str], results_dir: str = "") -> FillCommand:
    """``make reproduce-table-<id>`` for the ``missing`` runs with the overrides of the runs ``present``
    (the most common set, when they differ), or the published protocol when none is present."""
    variables: dict[str, str] = {}
    if results_dir and Path(results_dir) != Path("results/runs"):
        variables["RESULTS_DIR"] = str(results_dir)
    if missing and len(missing) < len(experiments):
        variables["EXPERIMENTS"] = ",".join(e for e in experiments if e in missing)
    if not present:
        return FillCommand(make_command(f"reproduce-table-{table_id}", variables), "the published protocol")
    sets = Counter(r.overrides for r in present)
    chosen, n = sets.most_common(1)[0]
    # kept even where the table's sweep sets the same key (eval=attacks of the Singh sweeps): Hydra takes
    # the command line's value once, and an override below it (eval.evaluators.attacks.n=32) needs it
    variables["ARGS"] = " ".join(chosen)
    sources = sorted({r.overrides_from for r in present if r.overrides == chosen})
    basis = "the runs' own overrides" if sources != ["reconstructed"] else \
        "the settings in which the runs present depart from the published protocol (they carry no overrides)"
    note = "" if len(sets) == 1 else (f"the {len(present)} runs present use {len(sets)} different sets of "
                                      f"overrides; this command uses those of {n} of them")
    return FillCommand(make_command(f"reproduce-table-{table_id}", variables), basis, note)
