"""The job's side of the SLURM launcher: what runs around one run inside its SLURM job.

:func:`guarded` wraps the launcher's ``__call__`` (compose the job's config, run it):

* the job renames itself ``<experiment>-s<seed>`` (``scontrol update JobName=``), so ``squeue`` and
  ``sacct`` say which run it is (pending tasks of the array keep the array's name);
* a run that raised: the traceback goes to the job's log (stderr), and the launcher gets a one-line
  :class:`RunFailed` instead of the exception (the sweep's summary shows that line);
* a run that exited with a status (a user error: ``error: …`` on stderr, status 2) becomes a
  :class:`RunExited`, so submitit writes the job's result file and the launcher learns of it at once,
  with or without accounting;
* a run stopped by a signal, or whose job SLURM requeues, exits as it is: no result file, so
  SLURM's state (requeued and running again, or cancelled) decides what the launcher sees.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from bioreg.launch.slurm_cmd import one_line, run_slurm
from bioreg.launch.stints import requeue_pending, slurm_job_id

__all__ = ["RunFailed", "RunExited", "guarded", "run_label", "job_name"]

log = logging.getLogger("bioreg")


class RunFailed(RuntimeError):
    """A run raised inside its job; the message is its one-line summary (traceback in the job's log)."""


class RunExited(RuntimeError):
    """A run exited with a non-zero status (its ``error: …`` line is in the job's log)."""


def run_label(overrides: Sequence[str]) -> tuple[str, str | None]:
    """(experiment, seed) named by a job's overrides: ``+experiment=`` (else ``name=``), ``seed=``."""
    found: dict[str, str] = {}
    for o in overrides:
        key, _, value = str(o).partition("=")
        found[key.lstrip("+~")] = value
    return found.get("experiment") or found.get("name") or "default", found.get("seed")


def job_name(overrides: Sequence[str]) -> str:
    exp, seed = run_label(overrides)
    return f"{exp}-s{seed}" if seed is not None else exp


def rename_job(name: str) -> None:
    """Name this SLURM job (best effort: a failure is logged, never fatal)."""
    job = slurm_job_id()  # <array>_<task>: the array's own id would rename every task of the array
    if not job:
        return
    res = run_slurm(["scontrol", "update", f"JobId={job}", f"JobName={name}"], 30.0)
    if res is None or res.returncode != 0:
        log.info(
            "could not name SLURM job %s %s: %s", job, name, one_line(res.stderr) if res else "no scontrol"
        )


def _signal_status(code: Any) -> bool:
    return isinstance(code, int) and (code < 0 or 128 < code < 128 + 65)


def guarded(call: Callable[[], Any], overrides: Sequence[str]) -> Any:
    """Run ``call`` (the launcher's job) as the module doc says; returns its ``JobReturn``."""
    from hydra.core.utils import JobStatus

    rename_job(job_name(overrides))
    try:
        ret = call()
    except SystemExit as e:
        if e.code in (0, None) or _signal_status(e.code) or requeue_pending():
            raise  # a stop by a signal or a requeue: SLURM's state tells the launcher
        raise RunExited(f"the run exited with status {e.code}") from None
    if ret.status == JobStatus.FAILED:
        exc = ret._return_value
        print(f"run {' '.join(overrides)} failed:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        ret.return_value = RunFailed(one_line(f"{type(exc).__name__}: {exc}"))
    return ret
