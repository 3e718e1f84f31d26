"""Before submitting: can the partition ever run what the launcher asks for?

sbatch rejects some impossible requests with a message that does not name the setting to change
(``Invalid generic resource (gres) specification`` for a GPU on a GPU-less partition, ``Memory
specification can not be satisfied``) and *accepts* others that then pend forever (more CPUs per task
than any node has: ``Reason=PartitionConfig``; a time limit above the partition's ``MaxTime``:
``Reason=PartitionTimeLimit``). :func:`check_request` reads the partition and its nodes
(``scontrol show partition -o``, ``scontrol show node -o``) and compares them with the request:

* CPUs per node (``cpus_per_task`` x ``tasks_per_node``) against ``CPUEfctv``/``CPUTot`` and the
  partition's ``MaxCPUsPerNode``;
* GPUs (``gpus_per_node``, ``gpus_per_task``, a ``gpu`` entry of ``gres``, with a type if given)
  and other ``gres`` against each node's ``Gres``;
* memory per node (``mem_gb``, or ``mem_per_cpu`` x CPUs, or ``mem_per_gpu`` x GPUs) against
  ``RealMemory`` and ``MaxMemPerNode``; ``mem_per_cpu`` against ``MaxMemPerCPU``;
* ``timeout_min`` against ``MaxTime``, and ``signal_delay_s`` against ``timeout_min``;
* ``constraint`` (features joined by ``&`` and ``|``) against ``AvailableFeatures``, ``exclude``
  against the partition's node list, ``nodes`` against the nodes that fit and ``MaxNodes``;
* the partition's ``State`` (``DRAIN``/``INACTIVE`` take no jobs; ``DOWN`` is a warning).

Each mismatch names the setting and the value that fits (``set SLURM_CPUS=2
(hydra.launcher.cpus_per_task=2)``); :func:`preflight` joins them into one
:class:`SlurmRequestError` line. Account and QoS names are left to sbatch (whose refusal the launcher
also shows in one line): without accounting they cannot be checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bioreg.errors import UserError
from bioreg.launch.slurm_cmd import expand_hostlist, parse_records, slurm_output

__all__ = [
    "Request",
    "Partition",
    "Node",
    "SlurmRequestError",
    "check_request",
    "preflight",
    "parse_gres",
    "parse_minutes",
    "parse_mem_mb",
    "read_cluster",
    "FIXES",
]

#: launcher key -> Make variable that sets it (None: only the hydra.launcher.* override)
FIXES: dict[str, str | None] = {
    "partition": "SLURM_PARTITION",
    "cpus_per_task": "SLURM_CPUS",
    "gpus_per_node": "SLURM_GPUS",
    "mem_gb": "SLURM_MEM",
    "timeout_min": "SLURM_TIME",
    "constraint": "SLURM_CONSTRAINT",
    "exclude": "SLURM_EXCLUDE",
    "gres": "SLURM_GRES",
    "mem_per_cpu": "SLURM_MEM_PER_CPU",
    "qos": "SLURM_QOS",
    "gpus_per_task": None,
    "mem_per_gpu": None,
    "nodes": None,
    "signal_delay_s": None,
    "tasks_per_node": None,
}


class SlurmRequestError(UserError):
    """The SLURM partition can never run the launcher's request."""


def fix(key: str, value: Any) -> str:
    """``set SLURM_CPUS=2 (hydra.launcher.cpus_per_task=2)``, or the override alone."""
    make = FIXES.get(key)
    over = f"hydra.launcher.{key}={value}"
    return f"set {make}={value} ({over})" if make else f"set {over}"


# ----------------------------------------------------------------------------- parsing


def parse_minutes(text: str | int | None) -> int | None:
    """A SLURM time (``60``, ``30:00``, ``01:00:00``, ``2-00:00:00``, ``2-12``) in whole minutes
    (seconds round up); None for ``UNLIMITED``/``INFINITE``/``NONE``."""
    if text is None:
        return None
    s = str(text).strip()
    if s.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A", ""):
        return None
    days, _, rest = s.rpartition("-") if "-" in s else ("0", "", s)
    parts = [int(p) for p in rest.split(":")]
    if "-" in s:  # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        h, m, sec = parts
    elif len(parts) == 3:
        h, m, sec = parts
    elif len(parts) == 2:  # minutes:seconds
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = 0, parts[0], 0
    return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)


def parse_mem_mb(text: str | int | float | None) -> int | None:
    """A SLURM memory size (``4000``, ``4G``, ``4GB``, ``512M``, ``1T``; no unit = MB) in MB."""
    if text is None or str(text).strip().upper() in ("UNLIMITED", "0", "", "NONE"):
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)B?\s*", str(text).upper())
    if m is None:
        raise SlurmRequestError(f"cannot read the memory size {text!r}: use e.g. 4000 (MB), 4G or 512M")
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)]
    return int(float(m.group(1)) * scale)


def parse_gres(text: str | None) -> list[tuple[str, str | None, int]]:
    """``gpu:a100:4(S:0-1),nic:1`` -> [(gpu, a100, 4), (nic, None, 1)]; ``(null)`` -> []."""
    if not text or str(text).strip() in ("(null)", "N/A", "none"):
        return []
    out = []
    for item in re.split(r",(?![^(]*\))", str(text)):
        parts = item.split("(", 1)[0].strip().split(":")
        if not parts[0]:
            continue
        count, mid = 1, parts[1:]
        if mid and re.fullmatch(r"\d+", mid[-1]):
            count, mid = int(mid[-1]), mid[:-1]
        out.append((parts[0], mid[0] if mid else None, count))
    return out


def _gpu_spec(value: Any) -> tuple[str | None, int]:
    """``gpus_per_node`` as (type, count): ``2`` -> (None, 2), ``a100:2`` -> (a100, 2)."""
    s = str(value)
    if ":" in s:
        typ, n = s.rsplit(":", 1)
        return typ, int(n)
    return None, int(s)


@dataclass
class Node:
    name: str
    cpus: int
    mem_mb: int
    gres: list[tuple[str, str | None, int]]
    features: set[str]
    partitions: set[str]

    @classmethod
    def from_record(cls, r: Mapping[str, str]) -> Node:
        feats = r.get("AvailableFeatures", "(null)")
        return cls(
            name=r["NodeName"],
            cpus=int(r.get("CPUEfctv") or r.get("CPUTot") or 0),
            mem_mb=int(r.get("RealMemory") or 0),
            gres=parse_gres(r.get("Gres")),
            features=set() if feats in ("(null)", "") else set(feats.split(",")),
            partitions=set(filter(None, r.get("Partitions", "").split(","))),
        )

    def count(self, name: str, typ: str | None = None) -> int:
        return sum(n for g, t, n in self.gres if g == name and (typ is None or t == typ))


@dataclass
class Partition:
    name: str
    default: bool
    state: str
    max_time_min: int | None
    max_nodes: int | None
    max_cpus_per_node: int | None
    max_mem_per_node: int | None
    max_mem_per_cpu: int | None
    node_names: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, r: Mapping[str, str]) -> Partition:
        def limit(key: str) -> int | None:
            v = r.get(key, "UNLIMITED")
            return None if v in ("UNLIMITED", "0", "") else int(v)

        return cls(
            name=r["PartitionName"],
            default=r.get("Default") == "YES",
            state=r.get("State", "UP"),
            max_time_min=parse_minutes(r.get("MaxTime")),
            max_nodes=limit("MaxNodes"),
            max_cpus_per_node=limit("MaxCPUsPerNode"),
            max_mem_per_node=limit("MaxMemPerNode"),
            max_mem_per_cpu=limit("MaxMemPerCPU"),
            node_names=expand_hostlist(r.get("Nodes", "")) if r.get("Nodes") not in (None, "(null)") else [],
        )


@dataclass
class Request:
    """What the launcher config asks sbatch for, per node."""

    partition: str | None = None
    nodes: int = 1
    tasks: int = 1  # tasks per node
    cpus_per_task: int = 1
    gpus: int = 0  # per node
    gpu_type: str | None = None
    gpu_key: str = "gpus_per_node"  # which setting asked for the GPUs
    gpu_asked: str = "0"  # its value as given
    gres: list[tuple[str, str | None, int]] = field(default_factory=list)  # other than gpu
    mem_mb: int | None = None  # per node
    mem_key: str = "mem_gb"
    mem_per_cpu_mb: int | None = None
    time_min: int = 60
    signal_delay_s: int = 0
    constraint: str | None = None
    exclude: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # settings sbatch refuses together
    notes: list[str] = field(default_factory=list)  # settings that are odd together (warnings)

    @property
    def cpus(self) -> int:
        return self.cpus_per_task * self.tasks

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        """The request of a ``hydra.launcher`` config (``additional_parameters`` win, as in sbatch)."""
        p = dict(params)
        for k, v in (p.get("additional_parameters") or {}).items():
            p[str(k).replace("-", "_")] = v
        if "time" in p:
            p["timeout_min"] = parse_minutes(p["time"])
        req = cls(
            partition=p.get("partition") or None,
            nodes=int(p.get("nodes") or 1),
            tasks=int(p.get("tasks_per_node") or p.get("ntasks_per_node") or 1),
            cpus_per_task=int(p.get("cpus_per_task") or 1),
            time_min=int(p.get("timeout_min") or 60),
            signal_delay_s=int(p.get("signal_delay_s") or 0),
            constraint=p.get("constraint") or None,
            exclude=expand_hostlist(str(p["exclude"])) if p.get("exclude") else [],
        )
        req._gpus_and_gres(p)
        req._memory(p)
        return req

    def _gpus_and_gres(self, p: Mapping[str, Any]) -> None:
        for g, t, n in parse_gres(p.get("gres")):
            if g == "gpu":
                self.gpus, self.gpu_type, self.gpu_key, self.gpu_asked = n, t, "gres", str(p["gres"])
            else:
                self.gres.append((g, t, n))
        if p.get("gpus_per_task"):
            self.gpu_type, n = _gpu_spec(p["gpus_per_task"])
            self.gpus, self.gpu_key, self.gpu_asked = n * self.tasks, "gpus_per_task", str(p["gpus_per_task"])
        if p.get("gpus_per_node"):
            if self.gpu_key == "gres":
                self.notes.append(
                    f"gres={p['gres']} and gpus_per_node={p['gpus_per_node']} both ask for GPUs and "
                    "sbatch gets both; keep one (SLURM_GPUS=0 or SLURM_GRES=null)"
                )
            self.gpu_type, self.gpus = _gpu_spec(p["gpus_per_node"])
            self.gpu_key, self.gpu_asked = "gpus_per_node", str(p["gpus_per_node"])

    def _memory(self, p: Mapping[str, Any]) -> None:
        if p.get("mem") is not None:
            self.mem_mb, self.mem_key = parse_mem_mb(p["mem"]), "mem_gb"
        elif p.get("mem_gb") is not None:
            self.mem_mb, self.mem_key = int(float(p["mem_gb"]) * 1024), "mem_gb"
        asked = [
            k
            for k in ("mem_gb", "mem_per_cpu", "mem_per_gpu")
            if p.get(k) is not None or (k == "mem_gb" and p.get("mem") is not None)
        ]
        if len(asked) > 1:
            self.conflicts.append(
                f"{' and '.join(asked)} are set together but sbatch takes one memory setting; "
                f"set all but one to null (e.g. hydra.launcher.{asked[0]}=null)"
            )
        if p.get("mem_per_cpu") is not None:
            self.mem_per_cpu_mb = parse_mem_mb(p["mem_per_cpu"])
            if self.mem_per_cpu_mb is not None:
                self.mem_mb, self.mem_key = self.mem_per_cpu_mb * self.cpus, "mem_per_cpu"
        elif p.get("mem_per_gpu") is not None and self.gpus:
            per_gpu = parse_mem_mb(p["mem_per_gpu"])
            self.mem_mb, self.mem_key = (per_gpu * self.gpus if per_gpu else None), "mem_per_gpu"


# ----------------------------------------------------------------------------- checking


def _satisfies(features: set[str], expr: str) -> bool:
    """``a&b|c`` against a node's features (operators ``&`` and ``|`` only; see :func:`_checkable`)."""
    return any(all(f.strip() in features for f in conj.split("&")) for conj in expr.split("|"))


def _checkable(expr: str) -> bool:
    return re.search(r"[\[\]()*!]", expr) is None


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _eligible(req: Request, part: Partition, nodes: list[Node], v: Verdict) -> list[Node]:
    """The partition's nodes that ``exclude`` and ``constraint`` leave."""
    mine = [n for n in nodes if part.name in n.partitions or n.name in part.node_names]
    left = [n for n in mine if n.name not in req.exclude]
    if mine and not left:
        v.errors.append(
            f"exclude={','.join(req.exclude)} leaves none of its nodes "
            f"({', '.join(n.name for n in mine)}); {fix('exclude', 'null')}"
        )
        return []
    if req.constraint and _checkable(req.constraint):
        fit = [n for n in left if _satisfies(n.features, req.constraint)]
        if not fit:
            have = sorted(set().union(*(n.features for n in left))) or ["none"]
            v.errors.append(
                f"constraint={req.constraint} matches none of its nodes (their features: "
                f"{', '.join(have)}); {fix('constraint', 'null')} or name one of those"
            )
        return fit
    if req.constraint:
        v.warnings.append(f"constraint={req.constraint} was not checked (only & and | are)")
    return left


def _cpu_limit(n: Node, part: Partition) -> int:
    return min(n.cpus, part.max_cpus_per_node or n.cpus)


def _mem_limit(n: Node, part: Partition) -> int:
    return min(n.mem_mb, part.max_mem_per_node or n.mem_mb)


def _check_cpus(req: Request, part: Partition, nodes: list[Node], v: Verdict) -> None:
    best = max(_cpu_limit(n, part) for n in nodes)
    if req.cpus > best:
        per_task = f" x tasks_per_node={req.tasks}" if req.tasks > 1 else ""
        v.errors.append(
            f"cpus_per_task={req.cpus_per_task}{per_task} but its nodes have at most {best} CPUs "
            f"(the job would pend forever); {fix('cpus_per_task', max(1, best // req.tasks))}"
        )


def _check_gpus(req: Request, part: Partition, nodes: list[Node], v: Verdict, others: list[str]) -> None:
    if req.gpus:
        best = max(n.count("gpu", req.gpu_type) for n in nodes)
        if req.gpus > best:
            kind = f" of type {req.gpu_type}" if req.gpu_type else ""
            has = (
                f"at most {best} GPUs{kind}"
                if best
                else f"no GPU{kind} (sbatch: 'Invalid generic resource (gres) specification')"
            )
            value = (
                best
                if req.gpu_key != "gres"
                else (f"gpu:{req.gpu_type + ':' if req.gpu_type else ''}{best}" if best else "null")
            )
            hint = f"; partitions with GPUs: {', '.join(others)}" if others and not best else ""
            v.errors.append(
                f"{req.gpu_key}={req.gpu_asked} but its nodes have {has}; {fix(req.gpu_key, value)}{hint}"
            )
    for g, t, count in req.gres:
        best = max(n.count(g, t) for n in nodes)
        if count > best:
            v.errors.append(
                f"gres={g}{':' + t if t else ''}:{count} but its nodes have at most {best}; "
                f"{fix('gres', 'null')}"
            )


def _check_memory(req: Request, part: Partition, nodes: list[Node], v: Verdict) -> None:
    if req.mem_per_cpu_mb and part.max_mem_per_cpu and req.mem_per_cpu_mb > part.max_mem_per_cpu:
        v.errors.append(
            f"mem_per_cpu={req.mem_per_cpu_mb}M is above the partition's MaxMemPerCPU="
            f"{part.max_mem_per_cpu}M; {fix('mem_per_cpu', f'{part.max_mem_per_cpu}M')}"
        )
    if req.mem_mb is None:
        return
    best = max(_mem_limit(n, part) for n in nodes)
    if req.mem_mb > best:
        if req.mem_key == "mem_per_cpu":
            value = f"{best // req.cpus}M"
        elif req.mem_key == "mem_per_gpu":
            value = f"{best // max(1, req.gpus)}M"
        else:
            value = best // 1024
        v.errors.append(
            f"{req.mem_key} asks {req.mem_mb} MB per node but its nodes have at most {best} MB "
            f"(sbatch: 'Memory specification can not be satisfied'); {fix(req.mem_key, value)}"
        )


def _check_time(req: Request, part: Partition, v: Verdict) -> None:
    if part.max_time_min is not None and req.time_min > part.max_time_min:
        v.errors.append(
            f"timeout_min={req.time_min} is above its MaxTime of {part.max_time_min} min (the job "
            f"would pend forever); {fix('timeout_min', part.max_time_min)} (longer runs are "
            "requeued and resume)"
        )
    if req.signal_delay_s >= req.time_min * 60:
        v.errors.append(
            f"signal_delay_s={req.signal_delay_s} is not shorter than timeout_min={req.time_min} "
            f"min: the requeue signal would come at once; {fix('signal_delay_s', 60)}"
        )


def _fits(req: Request, part: Partition, n: Node) -> bool:
    return (
        _cpu_limit(n, part) >= req.cpus
        and n.count("gpu", req.gpu_type) >= req.gpus
        and all(n.count(g, t) >= c for g, t, c in req.gres)
        and (req.mem_mb is None or _mem_limit(n, part) >= req.mem_mb)
    )


def _check_nodes(req: Request, part: Partition, nodes: list[Node], v: Verdict) -> None:
    fit = [n for n in nodes if _fits(req, part, n)]
    if not fit:
        v.errors.append("no single node of it has the CPUs, GPUs and memory asked for at once; ask for less")
    elif len(fit) < req.nodes:
        v.errors.append(
            f"nodes={req.nodes} but only {len(fit)} of its nodes fit the request; {fix('nodes', len(fit))}"
        )
    if part.max_nodes is not None and req.nodes > part.max_nodes:
        v.errors.append(
            f"nodes={req.nodes} is above its MaxNodes={part.max_nodes}; {fix('nodes', part.max_nodes)}"
        )


def check_partition(req: Request, part: Partition, nodes: list[Node], others: list[str] = ()) -> Verdict:
    """Every reason why ``part`` can never run ``req`` (``others``: partitions that have GPUs)."""
    v = Verdict(errors=list(req.conflicts), warnings=list(req.notes))
    state = part.state.upper()
    if state in ("DRAIN", "INACTIVE"):
        v.errors.append(
            f"its state is {state}: it takes no new jobs; choose another with SLURM_PARTITION=<name>"
        )
    elif state != "UP":
        v.warnings.append(f"partition '{part.name}' is {state}: jobs wait until it is UP again")
    _check_time(req, part, v)
    eligible = _eligible(req, part, nodes, v)
    if not eligible:
        if not v.errors:
            v.errors.append("it has no nodes")
        return v
    before = len(v.errors)
    _check_cpus(req, part, eligible, v)
    _check_gpus(req, part, eligible, v, list(others))
    _check_memory(req, part, eligible, v)
    if len(v.errors) == before:
        _check_nodes(req, part, eligible, v)
    return v


def _choose_partitions(req: Request, parts: dict[str, Partition]) -> list[Partition]:
    names = sorted(parts)
    listing = ", ".join(f"{n} (default)" if parts[n].default else n for n in names) or "none"
    if req.partition is None:
        default = [p for p in parts.values() if p.default]
        if not default:
            raise SlurmRequestError(
                f"no SLURM partition given and the cluster has no default one; "
                f"{fix('partition', '<name>')} (partitions: {listing})"
            )
        return default[:1]
    wanted = [s.strip() for s in str(req.partition).split(",") if s.strip()]
    unknown = [w for w in wanted if w not in parts]
    if unknown:
        raise SlurmRequestError(
            f"SLURM partition '{unknown[0]}' does not exist; {fix('partition', '<name>')} "
            f"(partitions: {listing})"
        )
    return [parts[w] for w in wanted]


def check_request(req: Request, parts: dict[str, Partition], nodes: list[Node]) -> list[str]:
    """Warnings for a request some chosen partition can run; :class:`SlurmRequestError` (one line,
    every mismatch of the first chosen partition) when none can."""
    chosen = _choose_partitions(req, parts)
    gpu_parts = sorted(
        p.name
        for p in parts.values()
        if any(n.count("gpu") for n in nodes if p.name in n.partitions or n.name in p.node_names)
    )
    verdicts = [(p, check_partition(req, p, nodes, gpu_parts)) for p in chosen]
    for _, v in verdicts:
        if not v.errors:
            return v.warnings
    part, v = verdicts[0]
    raise SlurmRequestError(
        f"SLURM partition '{part.name}' can never run this request: {'; '.join(v.errors)}"
    )


def read_cluster() -> tuple[dict[str, Partition], list[Node]]:
    """Partitions and nodes as ``scontrol`` reports them now."""
    parts = [
        Partition.from_record(r) for r in parse_records(slurm_output(["scontrol", "show", "partition", "-o"]))
    ]
    nodes = [Node.from_record(r) for r in parse_records(slurm_output(["scontrol", "show", "node", "-o"]))]
    return {p.name: p for p in parts}, nodes


def preflight(params: Mapping[str, Any]) -> list[str]:
    """Check the launcher's request against the cluster (:func:`check_request`); returns warnings."""
    slurm_output(["sbatch", "--version"])  # sbatch itself must be here, not just scontrol
    parts, nodes = read_cluster()
    return check_request(Request.from_params(params), parts, nodes)
