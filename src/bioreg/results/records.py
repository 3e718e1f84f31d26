"""Run records: one JSON document per (experiment, configuration, seed).

Layout under ``results_dir``::

    <results_dir>/<name>/<config_key>/seed<k>.json

``name`` is the experiment name (``cfg.name``), ``config_key`` a short hash of
everything that defines the trained model *except* the seed and machine-local
settings (see :func:`config_key`), so two runs of one experiment with different
overrides never overwrite or average into each other. The same record is also
written into the Hydra run directory (``record.json``).

Record fields (``RECORD_VERSION`` 1):

``name, seed, config_key, status`` (``"completed"``, ``"failed"``, or — for a run stopped by a
signal that resumes from its ``last.ckpt`` when launched again — ``"requeued"``/``"interrupted"``,
see :data:`INCOMPLETE` and :mod:`bioreg.launch.stints`),
``config`` (the resolved config), ``git`` (commit, dirty flag), ``versions``
(python, torch, …), ``device``, ``started``/``finished`` (ISO-8601 UTC),
``wall_time_s`` (the sum of ``stints``: one ``{started, finished, wall_time_s, end, host,
slurm_job}`` per launch that trained the run; records written before stints have none),
``best_epoch``, ``best_val_acc``, ``train`` (final-epoch metrics), ``metrics``
(``{test_set_name: {"acc": %, "loss": …, "n": …}}`` for ``test``, ``occlusion/<kind>``,
``corruption/<name>/<severity>``),
``summary`` (derived numbers, e.g. per-corruption means over severities),
``extra`` (sections added by evaluators: attacks, robustness, Fisher-Rao, …),
``overrides`` (the Hydra command-line overrides of the run, when it ran under Hydra; records
written before they were kept lack it), and for runs that did not complete ``error`` (one line), ``traceback``
and ``failure`` (exception, signal, stage, epoch, batch: :func:`bioreg.lit.failure.describe_failure`).
A record may also carry ``protocol: {reading: thesis | authors, selected_on: validation | test}``
(absent = the thesis's reading, model selected on the validation split).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreg.config.legacy import identity_view
from bioreg.io import atomic_write_json

__all__ = [
    "RECORD_VERSION", "IDENTITY_EXCLUDE", "config_key", "RecordStore", "DuplicateRecordError",
    "git_info", "package_versions", "utc_now", "read_record", "UNREADABLE", "INCOMPLETE", "task_overrides",
    "failure_text",
]

RECORD_VERSION = 1

#: config paths that do not change the trained model and are left out of its key
IDENTITY_EXCLUDE = (
    "data.data_dir", "data.num_workers", "data.pin_memory", "data.eval_batch_size", "data.cifar10c_dir",
    "data.download", "trainer.enable_progress_bar", "trainer.accelerator", "trainer.devices",
    "trainer.log_every_n_steps", "trainer.deterministic", "trainer.benchmark",
    "eval", "logger", "seed", "results_dir", "data_dir", "ckpt_dir", "on_existing", "ckpt_required", "hydra",
    "launcher", "sweep_ablations",
)


def _drop(d: Any, path: list[str]) -> None:
    if not isinstance(d, dict) or not path:
        return
    if len(path) == 1:
        d.pop(path[0], None)
    else:
        _drop(d.get(path[0]), path[1:])


def config_key(cfg: Mapping[str, Any], length: int = 10) -> str:
    """Short stable hash of the parts of a resolved config that define the trained model.

    Computed on the config as bioreg 0.1 spelled it (:func:`bioreg.config.legacy.identity_view`), so a
    run keeps its key, its records and its checkpoints across the renames of 0.2."""
    d = identity_view(json.loads(json.dumps(cfg, default=str)))
    for p in IDENTITY_EXCLUDE:
        _drop(d, p.split("."))
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class DuplicateRecordError(RuntimeError):
    pass


#: ``status`` of a run that stopped by a signal and resumes when launched again: not done, not failed
INCOMPLETE = ("requeued", "interrupted")
#: ``status`` of a record file that is not a run record (see :func:`read_record`)
UNREADABLE = "unreadable"
#: identity fields a record must give with these types when it has them
_FIELD_TYPES = {"name": (str, "a string"), "config_key": (str, "a string"), "status": (str, "a string"),
                "seed": (int, "an integer")}


def _json_kind(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


def read_record(path: str | Path) -> dict[str, Any]:
    """The record in one file, or ``{"status": "unreadable", "error": why}`` for a file that is not one.

    Not a record: unreadable bytes (``OSError``, not UTF-8), not JSON (e.g. truncated), JSON that is
    not an object (``[]``, a number, a string), or an identity field (``name``, ``config_key``,
    ``status``, ``seed``) of the wrong type. Records are written atomically, so such a file is a
    foreign or damaged one; the table scripts list it and go on.
    """
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        return {"status": UNREADABLE, "error": f"{type(e).__name__}: {e}"}
    if not isinstance(rec, dict):
        return {"status": UNREADABLE, "error": f"not a JSON object but {_json_kind(rec)}"}
    for key, (typ, what) in _FIELD_TYPES.items():
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, typ)):
            return {"status": UNREADABLE, "error": f"field {key!r} is {v!r}, not {what}"}
    return rec


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_info(cwd: str | Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def task_overrides() -> list[str] | None:
    """The command-line overrides of the running Hydra job (``None`` outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return [str(o) for o in HydraConfig.get().overrides.task]
    except Exception:  # noqa: BLE001 - not under Hydra (tests, notebooks, evaluate_checkpoint.py)
        return None


def failure_text(record: Mapping[str, Any]) -> str:
    """Why a failed run stopped, in one line: from its ``failure`` section, or for a record written
    before that section existed, from ``error`` (a bare ``"SIGTERMException: "`` becomes "killed by
    SIGTERM") and the last line of ``traceback`` when the error has no message."""
    f = record.get("failure")
    if isinstance(f, Mapping) and f.get("exception"):
        return _failure_line(f)
    err = " ".join(str(record.get("error") or "").split())
    name, _, msg = err.partition(":")
    if name.strip() == "SIGTERMException" and not msg.strip():
        return "killed by SIGTERM (Lightning's SIGTERMException; the record does not say at which epoch)"
    if err and not msg.strip():
        tb = [ln.strip() for ln in str(record.get("traceback") or "").splitlines() if ln.strip()]
        return f"{name.strip()} (no message){'; traceback ends: ' + tb[-1] if tb else ''}"
    return err or "no error text in the record"


def _failure_line(f: Mapping[str, Any]) -> str:
    where = []
    if "epoch" in f:
        where.append(f"epoch {f['epoch']}" + (f" of {f['max_epochs']}" if "max_epochs" in f else ""))
    if "batch" in f:
        where.append(f"after batch {f['batch']}" + (f" of {f['batches']}" if "batches" in f else ""))
    tail = (f" ({'global step ' + str(f['global_step'])})" if "global_step" in f else "")
    stage = {"train": "training", "validate": "validation", "sanity_check": "the sanity check",
             "evaluation": "the evaluation after training"}.get(
        str(f.get("stage")), str(f.get("stage") or ""))
    place = (f" during {stage}" if stage else "") + (": " + ", ".join(where) + tail if where else "")
    if f.get("signal"):
        return f"killed by {f['signal']}{place}"
    msg = f.get("message") or "(no message)"
    return f"{f['exception']}: {msg}" + (f" —{place}" if place else "")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("bioreg", "torch", "torchvision", "lightning", "hydra-core", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass
class RecordStore:
    """The ``results_dir`` index of run records."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, name: str, key: str, seed: int) -> Path:
        return self.root / name / key / f"seed{seed}.json"

    def load(self, name: str, key: str, seed: int) -> dict | None:
        p = self.path(name, key, seed)
        if not p.exists():
            return None
        return read_record(p)  # a damaged or foreign file: {"status": "unreadable", "error": why}

    def completed(self, name: str, key: str, seed: int) -> dict | None:
        rec = self.load(name, key, seed)
        return rec if rec and rec.get("status") == "completed" else None

    def write(self, record: Mapping[str, Any], *, overwrite: bool = False) -> Path:
        """Write a record atomically. A completed record is never replaced unless ``overwrite``."""
        p = self.path(record["name"], record["config_key"], int(record["seed"]))
        old = self.load(record["name"], record["config_key"], int(record["seed"]))
        if old and old.get("status") == "completed" and not overwrite:
            raise DuplicateRecordError(
                f"a completed record already exists at {p}; rerun with on_existing=overwrite to replace it "
                "or on_existing=skip to keep it"
            )
        return atomic_write_json(p, dict(record))

    def __iter__(self) -> Iterator[tuple[Path, dict]]:
        for p in sorted(self.root.glob("*/*/seed*.json")):
            yield p, read_record(p)
