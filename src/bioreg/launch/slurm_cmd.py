"""Calling SLURM's commands and reading what they print.

``scontrol show <entity> -o`` prints one record per line as ``Key=value`` tokens; a value may hold
spaces (``OS=Linux 6.1 #1 SMP``) and ``=`` signs (``TRES=cpu=2,mem=4000M``): :func:`parse_records`
reads both. ``scontrol show config`` prints ``Key = value`` lines (:func:`slurm_config`).

A missing command or an unreachable controller is the user's to fix (wrong machine, wrong module
loaded): :class:`SlurmUnavailable`, a :class:`bioreg.errors.UserError`, says so in one line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from bioreg.errors import UserError

__all__ = [
    "SlurmUnavailable",
    "run_slurm",
    "slurm_output",
    "parse_records",
    "slurm_config",
    "one_line",
    "expand_hostlist",
    "NOT_ON_SLURM",
]

#: what to do when SLURM's commands are not there
NOT_ON_SLURM = (
    "run it on a login node of the cluster (where sbatch works), or choose another launcher: "
    "hydra/launcher=local or basic (make ... LAUNCHER=local or LAUNCHER=basic)"
)
_KEY = re.compile(r"^[A-Za-z][\w:/.]*=")


class SlurmUnavailable(UserError):
    """SLURM's commands are missing here, or the controller does not answer."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line (whitespace runs become one space), at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_slurm(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess | None:
    """Run a SLURM command; None when it is not on PATH or does not answer within ``timeout``."""
    if shutil.which(args[0]) is None:
        return None
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def slurm_output(args: Sequence[str], timeout: float = 60.0) -> str:
    """The standard output of a SLURM command; :class:`SlurmUnavailable` when it is missing, does
    not answer or fails (its own message, one line)."""
    if shutil.which(args[0]) is None:
        raise SlurmUnavailable(
            f"hydra/launcher=slurm needs SLURM's `{args[0]}` command, which is not on PATH; {NOT_ON_SLURM}"
        )
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(
            f"`{' '.join(args)}` did not answer within {timeout:.0f} s: is slurmctld "
            "reachable from here? (try `sinfo`)"
        ) from None
    if out.returncode != 0:
        raise SlurmUnavailable(
            f"`{' '.join(args)}` failed: {one_line(out.stderr or out.stdout) or 'no message'} "
            "(try `sinfo`; is this a login node of the cluster?)"
        )
    return out.stdout


def parse_records(text: str) -> list[dict[str, str]]:
    """One dict per line of ``scontrol show <entity> -o`` output (``Key=value`` tokens)."""
    records = []
    for line in text.splitlines():
        rec: dict[str, str] = {}
        key = None
        for token in line.split():
            if _KEY.match(token):
                key, value = token.split("=", 1)
                rec[key] = value
            elif key is not None:  # a value with spaces
                rec[key] += " " + token
        if rec:
            records.append(rec)
    return records


def slurm_config(text: str) -> dict[str, str]:
    """``scontrol show config`` output as ``{key: value}``."""
    out = {}
    for line in text.splitlines():
        if " = " in line:
            k, v = line.split(" = ", 1)
            out[k.strip()] = v.strip()
    return out


def _expand_range(spec: str) -> list[str]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        if hi:
            out += [f"{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1)]
        else:
            out.append(part)
    return out


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's host list syntax as names: ``gpu[01-03,7],cpu1`` -> gpu01 gpu02 gpu03 gpu7 cpu1."""
    names: list[str] = []
    for m in re.finditer(r"([^,\[]*)(?:\[([^\]]*)\])?([^,\[]*)(?:,|$)", hostlist):
        prefix, ranges, suffix = m.groups()
        if ranges is not None:
            names += [f"{prefix}{r}{suffix}" for r in _expand_range(ranges)]
        elif prefix or suffix:
            names.append(prefix + suffix)
    return names
