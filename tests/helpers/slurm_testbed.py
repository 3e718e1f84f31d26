"""A one-node SLURM cluster on this machine, for ``make test-slurm`` (tests/test_slurm_cluster.py).

    bed = Testbed(root)      # root: an empty temporary folder; everything lives there
    bed.start()              # munged, slurmctld, slurmd — loopback only, pids kept
    subprocess.run([...], env=bed.env())   # SLURM_CONF points at root/slurm.conf
    bed.stop()               # cancel every job, stop exactly those pids, check nothing is left

* Packages: Debian's ``slurm-wlm`` and ``munge``; :func:`ensure_installed` installs them as root
  (``apt-get update`` first) when a command is missing, with a temporary ``policy-rc.d`` so that
  the packages' own services are not started.
* Config (all under ``root``): a fresh munge key and socket; ``slurm.conf`` with the node as
  ``slurmd -C`` sees it, free TCP ports on 127.0.0.1, ``proctrack/linuxproc``, ``task/none``, no
  cgroups, and **no accounting** (``accounting_storage/none``: ``sacct`` cannot answer — the mode
  in which submitit alone waits forever for a dead job). Partition ``debug`` (default, MaxTime 60 min).
* Nothing is left: :meth:`Testbed.stop` cancels the jobs, stops the job step daemons (children of
  our slurmd) and the three daemons by pid, and fails if a process still names ``root``.

Run by hand: ``python tests/helpers/slurm_testbed.py <empty dir>`` starts one and waits for Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "srun", "scancel")
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


def ensure_installed() -> None:
    """Install slurm-wlm and munge (as root, apt) unless their commands are all here."""
    if not missing_commands():
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"make test-slurm needs {', '.join(PACKAGES)} (missing: {', '.join(missing_commands())}); "
            "run it as root to let it apt-get install them"
        )
    made_policy = not POLICY_RC.exists()
    if made_policy:  # the packages must not start their system services
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], check=True, env=env
        )
    finally:
        if made_policy:
            POLICY_RC.unlink(missing_ok=True)
    if missing_commands():
        raise RuntimeError(
            f"after installing {', '.join(PACKAGES)}: still missing {', '.join(missing_commands())}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(cmd: str) -> str:
    return shutil.which(cmd) or str(Path("/usr/sbin", cmd))


def _wait(what: str, ok, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"SLURM testbed: {what} not ready after {timeout:.0f} s")
        time.sleep(0.5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _ancestors() -> set[int]:
    """This process and its parents (their command lines may name the testbed's folder)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


class Testbed:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        self.pids: dict[str, int] = {}
        self.node = socket.gethostname().split(".")[0]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, check=check, timeout=timeout
        )

    # -- starting --------------------------------------------------------------------------------
    def start(self) -> None:
        for d in ("munge", "run", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # munged wants its socket's folders searchable by all
        os.chmod(self.root / "run", 0o755)
        os.chmod(self.root / "munge", 0o700)
        try:
            self._start_munge()
            self._write_conf()
            self._start_daemon("slurmctld", [_sbin("slurmctld"), "-f", str(self.conf)])
            _wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).returncode == 0)
            self._start_daemon("slurmd", [_sbin("slurmd"), "-f", str(self.conf), "-N", self.node])
            _wait(
                "the node",
                lambda: (
                    self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
                    in ("idle", "mixed", "allocated")
                ),
            )
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        pidfile = self.root / "run" / "munged.pid"
        subprocess.run(
            [
                _sbin("munged"),
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={pidfile}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
        )
        _wait("munged", pidfile.exists, 20)
        self.pids["munged"] = int(pidfile.read_text().split()[0])

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.sock"

    def _node_line(self) -> str:
        out = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok and not tok.startswith("UpTime"))
        fields["NodeName"] = self.node
        keep = (
            "NodeName",
            "CPUs",
            "Boards",
            "SocketsPerBoard",
            "CoresPerSocket",
            "ThreadsPerCore",
            "RealMemory",
        )
        return " ".join(f"{k}={fields[k]}" for k in keep if k in fields) + " NodeAddr=127.0.0.1 State=UNKNOWN"

    def _write_conf(self) -> None:
        r = self.root
        lines = [
            "ClusterName=bioregtest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "DefMemPerCPU=1024",
            self._node_line(),
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=60 State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_daemon(self, name: str, cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, capture_output=True, env=self.env())
        pidfile = self.root / "run" / f"{name}.pid"
        _wait(name, lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30)
        self.pids[name] = int(pidfile.read_text().split()[0])

    # -- stopping --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, stop the job steps and the daemons we started (by pid), check."""
        if "slurmctld" in self.pids:
            self.run("scancel", "--user", str(os.getuid()), check=False)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 40 and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(1)
        steps = _children(self.pids["slurmd"]) if "slurmd" in self.pids else []
        for pid in [*steps, *(self.pids[n] for n in ("slurmd", "slurmctld", "munged") if n in self.pids)]:
            self._stop_pid(pid)
        self.pids.clear()
        left = self.leftovers()
        if left:
            raise RuntimeError(f"SLURM testbed: processes still use {self.root}: {left}")

    @staticmethod
    def _stop_pid(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        t0 = time.monotonic()
        while _pid_alive(pid) and time.monotonic() - t0 < 15:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> list[int]:
        """Processes whose command line names this testbed's folder (none after :meth:`stop`)."""
        out, mine = [], _ancestors()
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and int(p.name) not in mine:
                try:
                    if str(self.root).encode() in (p / "cmdline").read_bytes() and _pid_alive(int(p.name)):
                        out.append(int(p.name))
                except OSError:
                    pass
        return out


if __name__ == "__main__":  # a cluster to try things by hand
    ensure_installed()
    bed = Testbed(Path(sys.argv[1]))
    bed.start()
    print(f"export SLURM_CONF={bed.conf}   # pids {bed.pids}; Ctrl-C stops it", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        bed.stop()
