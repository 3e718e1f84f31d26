"""Following submitted jobs, with or without SLURM accounting.

submitit learns that a job ended only from ``sacct``. Without accounting (no slurmdbd:
``AccountingStorageType=accounting_storage/none``) ``sacct`` fails, submitit logs "Bypassing sacct
error" and keeps the job's state ``UNKNOWN`` — which it counts as *not finished* — so a job that died
without writing its result file (a SIGKILL, the out-of-memory killer, ``scancel``, a node failure)
is waited for forever. :class:`JobWatcher` asks slurmctld itself (``scontrol show job -o <array>``:
pending, running and recently ended jobs, with their exit code) and, for jobs slurmctld has already
forgotten (``MinJobAge`` after they end), ``sacct`` when accounting is on. A job neither knows is
``GONE``: it ended, and how it ended is lost.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bioreg.launch.slurm_cmd import parse_records, run_slurm, slurm_config

__all__ = [
    "JobState",
    "JobWatcher",
    "ACTIVE",
    "GONE",
    "accounting",
    "states_from_scontrol",
    "states_from_sacct",
    "expand_tasks",
]

log = logging.getLogger("bioreg")

#: states of a job that has not ended (a requeued job passes through REQUEUED/PENDING)
ACTIVE = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "COMPLETING",
        "CONFIGURING",
        "SUSPENDED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
#: a job slurmctld and accounting no longer know
GONE = "GONE"
#: reasons for which a pending job never starts as asked
NEVER_STARTS = frozenset(
    {
        "PartitionConfig",
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "PartitionDown",
        "PartitionInactive",
    }
)
_WHAT = {
    "FAILED": "failed",
    "CANCELLED": "was cancelled",
    "TIMEOUT": "hit its time limit and was not requeued",
    "OUT_OF_MEMORY": "ran out of memory",
    "NODE_FAIL": "lost its node",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "passed its deadline",
    "PREEMPTED": "was preempted and not requeued",
    "COMPLETED": "ended",
}


@dataclass(frozen=True)
class JobState:
    state: str
    reason: str = ""
    exit_code: str = ""  # "<status>:<signal>", as SLURM prints it
    restarts: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def signal(self) -> int:
        try:
            return int(self.exit_code.split(":")[1])
        except (IndexError, ValueError):
            return 0

    @property
    def status(self) -> int:
        try:
            return int(self.exit_code.split(":")[0])
        except ValueError:
            return 0

    def describe(self) -> str:
        """``was cancelled (SLURM state CANCELLED, signal 15)`` and the like."""
        if self.state == GONE:
            return (
                "ended without a result; its SLURM state is lost (slurmctld forgets an ended job after "
                "MinJobAge and accounting is off)"
            )
        detail = [f"SLURM state {self.state}"]
        if self.signal:
            detail.append(f"signal {self.signal}")
        elif self.status:
            detail.append(f"exit status {self.status}")
        return f"{_WHAT.get(self.state, 'ended')} ({', '.join(detail)})"


def expand_tasks(spec: str) -> list[int]:
    """Array task ids: ``0-4%2`` -> 0..4, ``1,3-4`` -> 1, 3, 4."""
    out: list[int] = []
    for part in spec.split("%", 1)[0].split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def states_from_scontrol(text: str) -> dict[str, JobState]:
    """``scontrol show job -o`` output as ``{job id: state}`` (array tasks as ``<array>_<task>``)."""
    out: dict[str, JobState] = {}
    for r in parse_records(text):
        st = JobState(
            state=r.get("JobState", "UNKNOWN").split()[0],
            reason=r.get("Reason", ""),
            exit_code=r.get("ExitCode", ""),
            restarts=int(r.get("Restarts", "0") or 0),
        )
        array, tasks = r.get("ArrayJobId"), r.get("ArrayTaskId")
        if array and tasks:
            for t in expand_tasks(tasks):
                out[f"{array}_{t}"] = st
        elif "JobId" in r:
            out[r["JobId"]] = st
    return out


def states_from_sacct(text: str) -> dict[str, JobState]:
    """``sacct -n -P -X -o JobID,State,ExitCode`` output as ``{job id: state}``."""
    out: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        jid, state, code = parts[0], parts[1].split()[0] if parts[1] else "UNKNOWN", parts[2]
        if "_[" in jid:  # pending tasks of an array: 12_[2-4%2]
            array, tasks = jid.split("_[", 1)
            for t in expand_tasks(tasks.rstrip("]")):
                out[f"{array}_{t}"] = JobState(state=state, exit_code=code)
        else:
            out[jid] = JobState(state=state, exit_code=code)
    return out


def accounting() -> tuple[bool, dict[str, str]]:
    """Whether ``sacct`` can answer here, and the controller's config (``scontrol show config``)."""
    res = run_slurm(["scontrol", "show", "config"])
    conf = slurm_config(res.stdout) if res is not None and res.returncode == 0 else {}
    storage = conf.get("AccountingStorageType", "")
    on = bool(shutil.which("sacct")) and storage not in ("", "accounting_storage/none")
    return on, conf


class JobWatcher:
    """The states of a set of jobs, polled with ``scontrol`` (and ``sacct`` when accounting is on)."""

    def __init__(self, use_sacct: bool, run: Callable = run_slurm):
        self.use_sacct = use_sacct
        self.run = run
        self._warned: set[str] = set()

    def poll(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The state of each job this round; a job missing from the answer could not be asked about
        (the controller did not answer) — try again later."""
        ids = list(job_ids)
        out: dict[str, JobState] = {}
        for array in sorted({j.split("_")[0] for j in ids}):
            res = self.run(["scontrol", "show", "job", "-o", array], 60.0)
            if res is None:
                continue
            if res.returncode == 0:
                out.update(states_from_scontrol(res.stdout))
            elif "invalid job id" not in (res.stderr or "").lower():
                continue  # no answer this round
            for j in ids:
                if j.split("_")[0] == array and j not in out:
                    out[j] = self._from_accounting(j)
        self._warn_stuck({j: s for j, s in out.items() if j in ids})
        return {j: s for j, s in out.items() if j in ids}

    def _from_accounting(self, job_id: str) -> JobState:
        if not self.use_sacct:
            return JobState(GONE)
        res = self.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", job_id.split("_")[0]], 60.0
        )
        if res is None or res.returncode != 0:
            return JobState(GONE)
        return states_from_sacct(res.stdout).get(job_id, JobState(GONE))

    def _warn_stuck(self, states: dict[str, JobState]) -> None:
        for j, s in states.items():
            if s.state == "PENDING" and s.reason in NEVER_STARTS and j not in self._warned:
                self._warned.add(j)
                log.warning(
                    "job %s is pending with Reason=%s: SLURM will not start it as asked (scontrol show "
                    "job %s); scancel it and change the request",
                    j,
                    s.reason,
                    j,
                )
            elif s.state in ("REQUEUE_HOLD", "SPECIAL_EXIT") and j not in self._warned:
                self._warned.add(j)
                log.warning("job %s is held (%s): `scontrol release %s` lets it run again", j, s.state, j)
