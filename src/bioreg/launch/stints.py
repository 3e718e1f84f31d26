"""A run's record across interruptions: honest status and every stint's wall time.

A run stopped by a signal — SLURM requeueing it (``scontrol requeue``, preemption), submitit's
time-limit requeue (USR2, then the launcher's ``checkpoint``), ``scancel``, Ctrl-C, a SIGTERM — has
not failed: its ``last.ckpt`` is kept and the next launch resumes from it. Its record says so
(:func:`stop_status`):

* ``requeued`` — SLURM is about to run the job again (submitit asked for the requeue, or
  ``scontrol show job`` counts more restarts than this process was started with);
* ``interrupted`` — stopped by a signal and nothing will restart it by itself; relaunching the
  sweep resumes it;
* ``failed`` — anything else (an exception, a time limit with no requeue left).

Readers (tables, report) treat ``requeued`` and ``interrupted`` (:data:`INCOMPLETE`) as runs that
are not done: not failures, never averaged.

Each record lists its stints (``stints``: start, end, wall time, how it ended, host, SLURM job);
``wall_time_s`` is their sum. A run that resumes from ``last.ckpt`` carries over the stints of the
record it resumes (:func:`carry_stints`); a record written before stints existed counts as one stint.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from bioreg.launch.slurm_cmd import parse_records, run_slurm
from bioreg.results.records import INCOMPLETE

__all__ = [
    "INCOMPLETE",
    "note_requeue",
    "requeue_asked",
    "requeue_pending",
    "stop_status",
    "carry_stints",
    "close_stint",
    "slurm_job_id",
]

_requeue_asked = False


def note_requeue() -> None:
    """submitit is about to requeue this job (the launcher's ``checkpoint`` was called)."""
    global _requeue_asked
    _requeue_asked = True


def requeue_asked() -> bool:
    return _requeue_asked


def slurm_job_id() -> str | None:
    """This process's SLURM job: ``<array job>_<task>`` for an array task, else the job id."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task and os.environ.get("SLURM_ARRAY_JOB_ID") else job


def requeue_pending() -> bool:
    """Will SLURM run this job again? True after :func:`note_requeue`, or when ``scontrol show job``
    counts more restarts than ``SLURM_RESTART_COUNT`` (a requeue raises it before the old job ends)."""
    if _requeue_asked:
        return True
    job = slurm_job_id()  # <array>_<task>: the array's own id would list every task of the array
    if not job:
        return False
    res = run_slurm(["scontrol", "show", "job", "-o", job], 10.0)
    if res is None or res.returncode != 0:
        return False
    recs = parse_records(res.stdout)
    try:
        restarts = int(recs[0].get("Restarts", "0")) if recs else 0
    except ValueError:
        return False
    return restarts > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def _by_signal(e: BaseException) -> bool:
    """Was ``e`` (or what it was raised from) a stop by a signal: SIGTERM (Lightning's
    ``SIGTERMException``), Ctrl-C, or submitit's exit after asking for a requeue?"""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if type(cur).__name__ == "SIGTERMException" or isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def stop_status(e: BaseException) -> str:
    """``requeued``, ``interrupted`` or ``failed`` for a run that stopped with ``e`` (module doc)."""
    if _requeue_asked:
        return "requeued"
    if not _by_signal(e):
        return "failed"
    return "requeued" if requeue_pending() else "interrupted"


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def carry_stints(record: dict[str, Any], previous: Mapping[str, Any] | None, resuming: bool) -> None:
    """Start ``record["stints"]`` with the stints of ``previous`` (the record of the same run that
    stopped before) when this launch resumes its checkpoint; a completed or unreadable previous
    record, or a start from scratch, carries nothing."""
    record["stints"] = []
    if not resuming or not previous or previous.get("status") in ("completed", "unreadable", None):
        return
    old = previous.get("stints")
    if isinstance(old, list):
        record["stints"] = [dict(s) for s in old if isinstance(s, Mapping) and "wall_time_s" in s]
    elif isinstance(previous.get("wall_time_s"), (int, float)):  # a record from before stints
        record["stints"] = [
            {
                "started": previous.get("started"),
                "finished": previous.get("finished"),
                "wall_time_s": float(previous["wall_time_s"]),
                "end": previous.get("status"),
            }
        ]


def close_stint(record: dict[str, Any], t0: float) -> None:
    """End this process's stint (started at ``t0``, ended now with ``record["status"]``): append it to
    ``record["stints"]``; ``wall_time_s`` becomes the sum of all stints, ``started`` the first's start."""
    now = time.time()
    stint = {
        "started": _iso(t0),
        "finished": _iso(now),
        "wall_time_s": round(now - t0, 3),
        "end": record.get("status"),
        "host": socket.gethostname(),
        "slurm_job": slurm_job_id(),
    }
    stints = [*record.get("stints", []), stint]
    record["stints"] = stints
    record["finished"] = stint["finished"]
    record["wall_time_s"] = round(sum(float(s.get("wall_time_s") or 0.0) for s in stints), 3)
    if len(stints) > 1 and stints[0].get("started"):
        record["started"] = stints[0]["started"]
