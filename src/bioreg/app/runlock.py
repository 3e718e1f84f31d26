"""One process per run: a lock file in the run's checkpoint folder.

Two launches of the same run (same experiment, config key and seed) would train into one checkpoint
folder and overwrite each other's record. :class:`RunLock` is taken at start-up, before anything is
written: ``<ckpt_dir>/<name>/<key>/seed<k>/run.lock``, a small JSON file
``{host, pid, pid_start, started, slurm_job, token}``, created atomically (written to a temporary
file, then ``os.link``\\ ed to its name, which fails if the name exists, so a lock file is never seen
half-written). A second launch finds it and stops with "already running (host, pid, started)".

**Staleness** (a holder that died without releasing: SIGKILL, node failure, SLURM preemption or
requeue). A lock is taken over when one of these holds, checked in this order:

1. *SLURM requeue:* the lock names the same SLURM job as the new process (``SLURM_JOB_ID``, with
   ``SLURM_ARRAY_TASK_ID`` for array jobs). SLURM starts a requeued job only after its previous
   incarnation has ended, so the holder is gone.
2. *Same host, process gone:* the lock's host is this host and its process no longer exists, or
   exists with another start time (``/proc/<pid>/stat``: the pid was reused).
3. *Heartbeat expired:* the holder touches the lock file every ``heartbeat_s`` (60 s) from a
   background thread; a lock whose modification time is older than ``stale_after_s`` (10 min) belongs
   to a process that no longer runs anywhere (e.g. on another node of a shared file system).

Otherwise the holder is alive and the new launch exits (status 2). A takeover renames the stale
file aside and checks that it moved the stale lock, not a fresh one another relauncher took in the
meantime. The lock is removed when the run ends, whatever the outcome (a Python exception, SIGTERM,
SIGINT); only a hard kill leaves it behind for the rules above.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from bioreg.errors import ConfigError
from bioreg.launch.stints import slurm_job_id as _slurm_job

__all__ = ["RunLock", "RunLockedError"]

log = logging.getLogger("bioreg")


class RunLockedError(ConfigError):
    """The same run (config key and seed) is already running."""


def _pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5): starttime


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    now = _pid_start(pid)
    return not (start and now and now != start)


class RunLock:
    """Context manager: hold the lock of one run for the duration of the block (see module doc)."""

    def __init__(self, folder: Path, label: str, heartbeat_s: float = 60.0, stale_after_s: float = 600.0):
        self.path = Path(folder) / "run.lock"
        self.label = label
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- taking and releasing ---------------------------------------------------------------
    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def info(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "slurm_job": _slurm_job(), "token": self.token}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._create():
            holder = self._read()
            why = self.stale_reason(holder)
            if why is None:
                h = holder or {}
                raise RunLockedError(
                    f"{self.label} is already running (host {h.get('host')}, pid {h.get('pid')}, started "
                    f"{h.get('started')}; lock {self.path}): wait for it, or delete the lock file if that "
                    "process is really gone")
            if not self._take_over(holder, why):
                h = self._read() or {}
                raise RunLockedError(
                    f"{self.label} is already running (host {h.get('host')}, pid {h.get('pid')}, "
                    f"started {h.get('started')}; lock {self.path}): another launch took it "
                    "first")
        self._beat = threading.Thread(target=self._heartbeat, name="bioreg-run-lock", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        holder = self._read()
        if holder and holder.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    # -- internals ----------------------------------------------------------------------------
    def _create(self) -> bool:
        """Create the lock file with our info, atomically; False if it exists already."""
        tmp = self.path.with_name(f".{self.path.name}.{self.token}.tmp")
        tmp.write_text(json.dumps(self.info()) + "\n")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        try:
            d = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def stale_reason(self, holder: dict | None) -> str | None:
        """Why the lock of ``holder`` may be taken over (a phrase), or None if its holder may be alive."""
        try:
            age = _dt.datetime.now().timestamp() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "the lock was released"
        if holder is None:  # not our format (written by hand?): trust only its age
            return f"unreadable lock, untouched for {age:.0f} s" if age > self.stale_after_s else None
        job = _slurm_job()
        if job and holder.get("slurm_job") == job:
            return f"SLURM job {job} was requeued"
        if holder.get("host") == socket.gethostname():
            try:
                pid = int(holder.get("pid"))
            except (TypeError, ValueError):
                pid = -1
            if pid <= 0 or not _alive(pid, holder.get("pid_start")):
                return f"process {holder.get('pid')} on this host is gone"
            return None
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _take_over(self, holder: dict | None, why: str) -> bool:
        aside = self.path.with_name(f".{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return self._create()
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if (moved or {}).get("token") != (holder or {}).get("token"):
            # another relauncher replaced the stale lock between our read and rename: put theirs back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        h = holder or {}
        log.warning("took over the lock of %s from host %s pid %s (%s)", self.label, h.get("host"),
                    h.get("pid"), why)
        return self._create()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass
