"""The launcher's side of a SLURM sweep: check, submit one job array, wait, report.

:func:`launch_sweep` replaces hydra-submitit-launcher's ``launch`` (which submits, then blocks in
submitit's ``job.results()``):

1. **check** (:func:`check_cluster`): SLURM's commands are here; the partition can ever run the
   request (:func:`bioreg.launch.request.preflight`, ``hydra.launcher.check_request``); a warning
   when accounting is off;
2. **submit** the runs as one job array with submitit; an sbatch refusal is one line
   (:class:`SubmissionRefused`);
3. **wait** (:func:`wait_for`) until every job has a result file or has ended in SLURM's eyes
   (:class:`bioreg.launch.jobstate.JobWatcher`: ``scontrol``, and ``sacct`` when accounting is on) —
   a requeued job is pending or running, not ended;
4. **report**: one line per failed run (experiment, seed, job id, the run's ``error: …`` line or how
   SLURM ended it, the job's log), then exit status 1 (:func:`report_failures`); tracebacks stay in
   the jobs' logs. Without failures the runs' ``JobReturn`` go back to Hydra's sweeper.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreg.errors import UserError
from bioreg.launch.jobside import RunFailed, run_label
from bioreg.launch.jobstate import JobState, JobWatcher, accounting
from bioreg.launch.request import preflight
from bioreg.launch.slurm_cmd import NOT_ON_SLURM, SlurmUnavailable, one_line

__all__ = [
    "launch_sweep",
    "check_cluster",
    "wait_for",
    "Outcome",
    "outcome_of",
    "failure_line",
    "report_failures",
    "SubmissionRefused",
    "last_error_line",
]

log = logging.getLogger("bioreg")

#: seconds a job may be seen ended before its result file must be there (a shared file system lags)
RESULT_GRACE_S = 15.0
NO_ACCOUNTING = (
    "SLURM accounting is off on this cluster (sacct cannot answer): the launcher follows the jobs with "
    "`scontrol show job` instead, which forgets a job {age} after it ends, so keep this command running "
    "until the sweep ends (submitit's own watcher needs sacct and would wait forever for a job that died)"
)


class SubmissionRefused(UserError):
    """sbatch refused the sweep's job array."""


@dataclass
class Outcome:
    """How one run of the sweep ended: ``job_return`` when it completed, else ``reason`` (one line)."""

    index: int
    job_id: str
    overrides: list[str]
    job_return: Any = None
    reason: str | None = None
    log: Path | None = None


def check_cluster(params: dict[str, Any], check_request: bool) -> bool:
    """Step 1; returns whether ``sacct`` can answer (accounting on)."""
    missing = [c for c in ("sbatch", "scontrol", "srun") if shutil.which(c) is None]
    if missing:
        raise SlurmUnavailable(
            f"hydra/launcher=slurm needs SLURM's commands {', '.join(missing)}, which are not "
            f"on PATH; {NOT_ON_SLURM}"
        )
    if check_request:
        for w in preflight(params):
            log.warning(w)
    on, conf = accounting()
    if not on:
        log.warning(NO_ACCOUNTING.format(age=conf.get("MinJobAge", "MinJobAge")))
    return on


def make_executor(params: dict[str, Any]) -> Any:
    """A submitit SLURM executor with the launcher's settings (as hydra-submitit-launcher sets them)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=params["submitit_folder"],
        slurm_max_num_timeout=params.get("max_num_timeout", 0),
    )
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in generic else f"slurm_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout")
        }
    )
    return executor


def submit(executor: Any, fn: Any, job_params: list[tuple]) -> list[Any]:
    """Step 2: one job array (sbatch's complaint, printed by submitit, is kept for the one line)."""
    from submitit.core.utils import FailedJobError

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return executor.map_array(fn, *zip(*job_params, strict=True))
    except FailedJobError as e:
        raise SubmissionRefused(
            f"sbatch refused the sweep's job array: {one_line(str(e) or said.getvalue())}; "
            "check the hydra.launcher settings (docs/slurm.md)"
        ) from None


def wait_for(
    jobs: Sequence[Any],
    watcher: JobWatcher,
    poll_s: float,
    grace_s: float = RESULT_GRACE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, JobState | None]:
    """Step 3: wait until every job has a result file (-> None) or has ended without one (-> its
    last state, seen ended for ``grace_s``); ``watcher`` is asked every 2 s at first, then every
    ``poll_s`` at most."""
    pending = {j.job_id: j for j in jobs}
    ended: dict[str, JobState | None] = {}
    seen_ended: dict[str, float] = {}
    interval, next_poll = 2.0, clock()
    while pending:
        for jid in [j for j, job in pending.items() if job.paths.result_pickle.exists()]:
            ended[jid] = None
            del pending[jid]
            seen_ended.pop(jid, None)
        if pending and clock() >= next_poll:
            for jid, st in watcher.poll(pending).items():
                if st.active:
                    seen_ended.pop(jid, None)
                elif clock() - seen_ended.setdefault(jid, clock()) >= grace_s:
                    ended[jid] = st
                    del pending[jid]
                    seen_ended.pop(jid)
            interval = min(poll_s, interval * 2)
            next_poll = clock() + (min(interval, grace_s) if seen_ended else interval)
        if pending:
            sleep(1.0)
    return ended


def last_error_line(path: Path | None) -> str | None:
    """The last ``error: …`` line of a log file (the run's own one-line error), if any."""
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.startswith("error: ")]
    return lines[-1] if lines else None


def _raised(message: str) -> str:
    """The exception line of the trace inside submitit's ``FailedJobError`` message (between its
    dashed rulers), else its first line."""
    parts = message.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else message
    lines = [ln for ln in trace.strip().splitlines() if ln.strip()]
    return lines[-1] if len(parts) >= 3 and lines else (lines[0] if lines else "the job raised an error")


def outcome_of(job: Any, state: JobState | None) -> tuple[Any, str | None]:
    """(JobReturn, None) for a completed run, (None, reason) for a failed one. A job with a result
    file is read through submitit's own ``job.results()`` (it is there: no waiting)."""
    from hydra.core.utils import JobStatus
    from submitit.core.utils import FailedJobError

    err_log = job.paths.stderr
    if state is not None:  # ended without a result file
        said = last_error_line(err_log)
        return None, state.describe() + (f": {said}" if said else "")
    try:
        (value,) = job.results()
    except FailedJobError as e:  # the job raised (a user error's exit status, see jobside.guarded)
        return None, last_error_line(err_log) or one_line(_raised(str(e)))
    if getattr(value, "status", None) == JobStatus.FAILED:
        exc = value._return_value
        return None, str(exc) if isinstance(exc, RunFailed) else one_line(f"{type(exc).__name__}: {exc}")
    return value, None


def failure_line(o: Outcome) -> str:
    exp, seed = run_label(o.overrides)
    who = f"{exp} seed {seed}" if seed is not None else exp
    return f"failed: {who} (SLURM job {o.job_id}): {o.reason}; log: {o.log}"


def report_failures(outcomes: Sequence[Outcome]) -> None:
    """Step 4: one line per failed run on stderr, then exit status 1."""
    failed = [o for o in outcomes if o.reason is not None]
    if not failed:
        return
    for o in failed:
        print(failure_line(o), file=sys.stderr)
    print(
        f"error: {len(failed)} of {len(outcomes)} runs of the sweep failed (lines above; tracebacks in the "
        "logs); relaunch the same command to retry them (completed runs are skipped)",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(1)


def _job_params(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[tuple]:
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides

    out = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        out.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    return out


def _sweep_dir(config: Any) -> None:
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))


def launch_sweep(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """Steps 1-4 for the runs ``job_overrides`` (module doc); returns their ``JobReturn`` in order."""
    own = launcher.own
    use_sacct = check_cluster(launcher.params, bool(own.get("check_request", True)))
    executor = make_executor(launcher.params)
    log.info("Submitit 'slurm' sweep output dir : %s", launcher.config.hydra.sweep.dir)
    _sweep_dir(launcher.config)
    job_params = _job_params(launcher, job_overrides, initial_job_idx)
    jobs = submit(executor, launcher, job_params)
    array = jobs[0].job_id.split("_")[0]
    log.info(
        "submitted %d run(s) as SLURM job %s (squeue -j %s; logs in %s)",
        len(jobs),
        array,
        array,
        jobs[0].paths.folder.parent,
    )
    try:
        ended = wait_for(jobs, JobWatcher(use_sacct), float(own.get("poll_s", 30.0)))
    except KeyboardInterrupt:
        print(
            f"interrupted: the jobs of SLURM job {array} go on without this command (scancel {array} stops "
            "them); relaunching the same command later skips the runs that completed",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    outcomes = []
    for job, params in zip(jobs, job_params, strict=True):
        ret, reason = outcome_of(job, ended[job.job_id])
        outcomes.append(
            Outcome(
                index=params[2],
                job_id=job.job_id,
                overrides=params[0],
                job_return=ret,
                reason=reason,
                log=job.paths.stderr,
            )
        )
    report_failures(outcomes)
    return [o.job_return for o in outcomes]
