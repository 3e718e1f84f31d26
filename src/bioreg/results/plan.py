"""GPU-hours of every thesis table's sweep: runs x epochs x seconds per epoch / concurrency.

For each ``conf/sweep/<table>.yaml`` the plan composes every experiment of the sweep (as
``train.py`` would) and reads its model, epochs, batch size, training/validation split and
evaluation suites. Seconds per training epoch come, per model family, from the first source
that has them:

1. ``measured``: a GPU benchmark (``scripts/bench_throughput.py --device cuda`` or ``make
   gpu-check``: ``results/bench/throughput_cuda.json``): seconds per training image of the real
   pipeline, scaled to the experiment's training split; ResNet depths that were not measured are
   interpolated linearly in depth between the measured ResNets;
2. ``records``: completed run records on a GPU (``wall_time_s / max_epochs``, median per family;
   it includes evaluation, so it overestimates slightly);
3. ``estimate``: the README's H200 figure -- "a training step of these small CIFAR models takes
   4-8 ms at batch 128" -- at its upper end, 8 ms per 128 training images for every family
   (``step_ms`` changes it; the lower end, 4 ms, halves every number).

Validation is one forward pass over the validation split per epoch (a third of a training step
per image). The CIFAR-10-C evaluation of a run (950 000 images) takes the benchmark's measured
time, else the issue's target of 30 s (an estimate). Attack evaluators (``eval=attacks``) are
not included. Runs are divided by the packing concurrency per family: the measured speedup of the
best N (``packing_*_cuda.json`` of ``bench_throughput.py --concurrent N``, or the packing section
of ``make gpu-check``), else 1 (no packing assumed), or a given ``family=N`` (N runs give N times
one run's throughput -- an assumption the user states).

A run shared by several tables (same experiment and seed) is trained once; the total counts each
unique run once. The runs of a table's *ablation* rows and columns (other readings, not printed:
``compare_to`` / ``ablation: true`` in the spec; left out by ``sweep_ablations=false``) are counted
apart: ``ablation_runs`` / ``ablation_gpu_hours`` per table and in total, never in the table's own
total. ``scripts/plan.py`` (``make plan``) is the command line; its last line is
:func:`result_line`: ``RESULT total_gpu_hours=<x> basis=<...> unique_runs=<n> ...``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioreg.errors import UserError

__all__ = [
    "PlanError",
    "PlanInputs",
    "family",
    "sweep_params",
    "ablation_experiments",
    "table_sweeps",
    "describe",
    "load_bench",
    "per_image_seconds",
    "record_seconds",
    "load_packing",
    "parse_concurrency",
    "make_plan",
    "print_plan",
    "result_line",
    "FULL_POOL",
    "STEP_MS_README",
    "C10C_TARGET_S",
    "C10C_IMAGES",
]

FULL_POOL = 50_000
STEP_MS_README = (4.0, 8.0)  # README: H200, one training step at batch 128 of these models
C10C_TARGET_S = 30.0  # issue target for one ResNet-20 on the 950 000 CIFAR-10-C images
C10C_IMAGES = 950_000


class PlanError(UserError, ValueError):
    """A bad argument of the plan (unknown table, malformed concurrency)."""


def family(target: str) -> str:
    return str(target).rsplit(".", 1)[-1].lower()


def sweep_params(path: Path) -> tuple[list[str], int]:
    """(experiments, number of seeds) of a sweep file (its lists come from the table spec:
    :func:`bioreg.results.sweeps.sweep_params` resolves them as Hydra does)."""
    from bioreg.results.sweeps import sweep_params as resolved

    params = resolved(path)
    exps = [e.strip() for e in str(params["+experiment"]).split(",") if e.strip()]
    seeds = [s for s in str(params.get("seed", "0")).split(",") if s.strip()]
    return exps, len(seeds)


def ablation_experiments(path: Path) -> list[str]:
    """The experiments of a sweep file that only its table's ablation axes name (what
    ``sweep_ablations=false`` leaves out), in sweep order."""
    from bioreg.results.sweeps import sweep_params as resolved

    core = {e.strip() for e in str(resolved(path, ablations=False)["+experiment"]).split(",")}
    return [e for e in sweep_params(path)[0] if e not in core]


def table_sweeps(conf_dir: Path, tables: list[str] | None = None) -> dict[str, Path]:
    """Table id -> sweep file (``table_2_5.yaml`` -> ``2.5``); ``tables`` picks some, in that order."""
    ids = {
        s.stem[len("table_") :].replace("_", "."): s
        for s in sorted((Path(conf_dir) / "sweep").glob("table_*.yaml"))
    }
    if not tables:
        return ids
    bad = [t for t in tables if t not in ids]
    if bad:
        raise PlanError(f"unknown table(s) {', '.join(bad)}; valid: {', '.join(ids)}")
    return {t: ids[t] for t in tables}


def describe(experiments: set[str], conf_dir: Path) -> dict[str, dict[str, Any]]:
    """Model family, epochs, split sizes and eval suites of each experiment (composed with Hydra)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    out = {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        for e in sorted(experiments):
            out[e] = _describe_one(compose("config", overrides=[f"+experiment={e}"]))
    GlobalHydra.instance().clear()
    return out


def _describe_one(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from bioreg.data.base import resolve_count

    data = OmegaConf.to_container(cfg.data, resolve=True)
    n_val = resolve_count(data.get("val_size", 0), FULL_POOL) if "cifar10" in str(data["_target_"]) else 0
    evaluators = (OmegaConf.to_container(cfg.eval, resolve=True).get("evaluators") or {}).keys()
    return {
        "family": family(cfg.model._target_),
        "epochs": int(cfg.trainer.max_epochs),
        "batch_size": int(data["batch_size"]),
        "train_images": FULL_POOL - n_val,
        "val_images": n_val,
        "corruption": "corruption" in list(cfg.eval.suites),
        "evaluators": sorted(evaluators),
    }


def load_bench(path: Path) -> dict[str, Any] | None:
    """A throughput benchmark file measured on a GPU (``device: cuda``), else ``None``."""
    if not Path(path).is_file():
        return None
    b = json.loads(Path(path).read_text())
    return b if b.get("device") == "cuda" else None


def per_image_seconds(
    bench: dict | None, records: dict[str, float], step_ms: float, fams: set[str]
) -> dict[str, tuple[float, str]]:
    """Seconds per training image of each family and the basis of the number."""
    out: dict[str, tuple[float, str]] = _measured_seconds(bench, fams) if bench else {}
    for fam in fams:
        if fam not in out and fam in records:
            out[fam] = (records[fam], "records")
    for fam in fams:
        if fam not in out:
            out[fam] = (step_ms / 1000.0 / 128.0, "estimate")
    return out


def _measured_seconds(bench: dict, fams: set[str]) -> dict[str, tuple[float, str]]:
    meas: dict[str, list[float]] = {}
    for c in bench.get("configs", []):
        fam = c.get("family") or family(c.get("model", ""))
        meas.setdefault(fam, []).append(c["epoch_s"] / c["images"])
    out = {fam: (statistics.median(v), "measured") for fam, v in meas.items()}
    res = sorted((int(f[6:]), out[f][0]) for f in out if re.fullmatch(r"resnet\d+", f))
    for fam in fams:
        m = re.fullmatch(r"resnet(\d+)", fam)
        if fam not in out and m and len(res) >= 2:
            d = int(m.group(1))
            (d0, s0), (d1, s1) = res[0], res[-1]
            out[fam] = (s0 + (s1 - s0) * (d - d0) / (d1 - d0), "measured (depth-interpolated)")
    return out


def record_seconds(root: Path) -> dict[str, float]:
    """Seconds per training image per family from completed GPU records (wall time / epochs)."""
    from bioreg.data.base import resolve_count

    per: dict[str, list[float]] = defaultdict(list)
    if not Path(root).is_dir():
        return {}
    for p in Path(root).rglob("seed*.json"):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        dev = str(r.get("device", ""))
        if (
            not isinstance(r, dict)
            or r.get("status") != "completed"
            or dev.startswith("cpu")
            or not r.get("wall_time_s")
        ):
            continue
        cfg = r.get("config") or {}
        epochs = int((cfg.get("trainer") or {}).get("max_epochs") or 0)
        data = cfg.get("data") or {}
        if not epochs or "cifar10" not in str(data.get("_target_", "")):
            continue
        n_train = FULL_POOL - resolve_count(data.get("val_size", 0), FULL_POOL)
        per[family((cfg.get("model") or {}).get("_target_", ""))].append(
            float(r["wall_time_s"]) / epochs / n_train
        )
    return {f: statistics.median(v) for f, v in per.items()}


def load_packing(folder: Path) -> dict[str, tuple[int, float]]:
    """Best measured packing (N, speedup) per family from ``packing_*_cuda.json`` files."""
    entries = []
    for p in sorted(Path(folder).glob("packing_*_cuda.json")):
        try:
            entries.append(json.loads(p.read_text()).get("packing") or {})
        except (OSError, ValueError):
            continue
    return best_packing(entries)


def best_packing(entries: list[dict]) -> dict[str, tuple[int, float]]:
    """Per family, the (N, speedup) with the largest measured speedup among ``{family, n,
    packing_speedup}`` entries."""
    best: dict[str, tuple[int, float]] = {}
    for pk in entries:
        fam = pk.get("family")
        if fam and (fam not in best or pk["packing_speedup"] > best[fam][1]):
            best[fam] = (int(pk["n"]), float(pk["packing_speedup"]))
    return best


def parse_concurrency(text: str | None) -> dict[str, int]:
    """``"vgg16=2, resnet20=4"`` -> ``{"vgg16": 2, "resnet20": 4}``; anything else is a PlanError."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise PlanError(f"--concurrency: {part!r} is not family=N (e.g. vgg16=2)")
        k, v = part.split("=", 1)
        if not v.strip().isdigit() or int(v) < 1:
            raise PlanError(f"--concurrency: N must be an integer >= 1, got {v!r} for {k}")
        out[k.strip()] = int(v)
    return out


@dataclass
class PlanInputs:
    """What the plan is computed from (``make_plan``); every field has the command line's default."""

    conf_dir: Path
    tables: list[str] | None = None
    seeds: int | None = None
    bench: dict | None = None  # a GPU throughput benchmark (load_bench), or None
    records: dict[str, float] = field(default_factory=dict)  # record_seconds
    packing: dict[str, tuple[int, float]] = field(default_factory=dict)  # load_packing / best_packing
    concurrency: dict[str, int] = field(default_factory=dict)  # given family=N, over the measured packing
    step_ms: float = STEP_MS_README[1]


def _divisor(fam: str, inp: PlanInputs) -> tuple[float, str]:
    if fam in inp.concurrency:
        return float(inp.concurrency[fam]), f"N={inp.concurrency[fam]} (given)"
    if fam in inp.packing:
        n, sp = inp.packing[fam]
        return sp, f"N={n} (measured x{sp:.2f})"
    return 1.0, "N=1 (not measured)"


def _c10c(bench: dict | None) -> tuple[float, str]:
    if bench and bench.get("c10c"):
        return float(bench["c10c"]["eval_s_full"]), "measured"
    return C10C_TARGET_S, "estimate (issue target)"


def make_plan(inp: PlanInputs) -> dict[str, Any]:
    """Rows per table and the total GPU-hours with shared runs once (a JSON-able dict); ablation runs
    apart (module docstring)."""
    sweeps = table_sweeps(inp.conf_dir, inp.tables)
    tables = {t: (*sweep_params(p), ablation_experiments(p)) for t, p in sweeps.items()}
    info = describe({e for exps, _, _ in tables.values() for e in exps}, inp.conf_dir)
    sec_img = per_image_seconds(inp.bench, inp.records, inp.step_ms, {i["family"] for i in info.values()})
    c10c_s, c10c_basis = _c10c(inp.bench)

    def epoch_s(e: str) -> float:
        return sec_img[info[e]["family"]][0] * (info[e]["train_images"] + info[e]["val_images"] / 3.0)

    def run_hours(e: str) -> float:
        return (epoch_s(e) * info[e]["epochs"] + (c10c_s if info[e]["corruption"] else 0.0)) / 3600.0

    rows, unique, unique_abl = [], {}, {}
    for t, (all_exps, n_seeds, abl) in tables.items():
        n_seeds = inp.seeds or n_seeds
        exps = [e for e in all_exps if e not in abl]
        hours = {e: run_hours(e) / _divisor(info[e]["family"], inp)[0] for e in all_exps}
        unique.update({(e, s): hours[e] for e in exps for s in range(n_seeds)})
        unique_abl.update({(e, s): hours[e] for e in abl for s in range(n_seeds)})
        rows.append(_plan_row(t, exps, abl, n_seeds, hours, info, epoch_s, sec_img, inp))
    unique_abl = {k: v for k, v in unique_abl.items() if k not in unique}  # printed elsewhere: counted there
    return {
        "tables": rows,
        "total_gpu_hours": sum(unique.values()),
        "unique_runs": len(unique),
        "ablation_gpu_hours": sum(unique_abl.values()),
        "unique_ablation_runs": len(unique_abl),
        "basis": sorted({sec_img[info[e]["family"]][1].split(" ")[0] for e, _ in unique}),
        "seconds_per_image": {f: list(v) for f, v in sec_img.items()},
        "c10c_s": [c10c_s, c10c_basis],
        "step_ms": inp.step_ms,
    }


def _plan_row(t: str, exps: list[str], abl: list[str], n_seeds: int, hours: dict[str, float],
              info: dict[str, dict[str, Any]], epoch_s, sec_img, inp: PlanInputs) -> dict[str, Any]:
    """One table of the plan: its printed runs and, apart, its ablation runs."""
    every = exps + abl
    fams = sorted({info[e]["family"] for e in every})
    return {
        "table": t,
        "experiments": len(exps),
        "seeds": n_seeds,
        "runs": len(exps) * n_seeds,
        "ablation_experiments": list(abl),
        "ablation_runs": len(abl) * n_seeds,
        "epochs": sorted({info[e]["epochs"] for e in every}),
        "families": fams,
        "s_per_epoch": [min(map(epoch_s, every)), max(map(epoch_s, every))],
        "concurrency": sorted({_divisor(f, inp)[1] for f in fams}),
        "basis": sorted({sec_img[f][1] for f in fams}),
        "gpu_hours": sum(hours[e] for e in exps) * n_seeds,
        "ablation_gpu_hours": sum(hours[e] for e in abl) * n_seeds,
    }


def print_plan(plan: dict[str, Any]) -> None:
    """The table of :func:`make_plan` and its notes, on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    tab = Table(title="GPU-hours per thesis table (one GPU; runs x epochs x s/epoch / concurrency); "
                      "ablation runs (other readings, sweep_ablations=false leaves them out) apart")
    right = ("runs", "s/epoch", "GPU-h", "ablation runs", "ablation GPU-h")
    for col in ("table", "runs", "epochs", "families", "s/epoch", "concurrency", "basis", "GPU-h",
                "ablation runs", "ablation GPU-h"):
        tab.add_column(col, justify="right" if col in right else "left")
    for r in plan["tables"]:
        lo, hi = r["s_per_epoch"]
        tab.add_row(
            r["table"],
            f"{r['runs']} ({r['experiments']}x{r['seeds']})",
            "/".join(map(str, r["epochs"])),
            ",".join(r["families"]),
            f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f}",
            "; ".join(r["concurrency"]),
            ",".join(r["basis"]),
            f"{r['gpu_hours']:.2f}",
            (f"{r['ablation_runs']} ({len(r['ablation_experiments'])}x{r['seeds']})"
             if r["ablation_runs"] else "0"),
            f"{r['ablation_gpu_hours']:.2f}",
        )
    tab.add_row(
        "all (shared runs once)",
        str(plan["unique_runs"]),
        "",
        "",
        "",
        "",
        "",
        f"{plan['total_gpu_hours']:.2f}",
        str(plan["unique_ablation_runs"]),
        f"{plan['ablation_gpu_hours']:.2f}",
    )
    Console(width=200).print(tab)
    sec_img = plan["seconds_per_image"]
    print(
        "seconds per training image by family: "
        + ", ".join(f"{f}={sec_img[f][0] * 1e3:.3f} ms ({sec_img[f][1]})" for f in sorted(sec_img))
    )
    if any(b == "estimate" for _, b in sec_img.values()):
        print(
            f"estimate = README's H200 figure, {plan['step_ms']:g} ms per training step of 128 images "
            "(README gives 4-8 ms; at 4 ms every estimated number halves); not measured on a GPU in this "
            "repository yet. "
            "Measure: make gpu-check (on a GPU node)"
        )
    c10c_s, c10c_basis = plan["c10c_s"]
    print(f"CIFAR-10-C evaluation per run: {c10c_s:.1f} s ({c10c_basis}); attack evaluators not included")


def result_line(plan: dict[str, Any]) -> str:
    """``RESULT total_gpu_hours=<x> basis=<...> c10c=<...> unique_runs=<n> tables=<n> step_ms=<x>
    ablation_gpu_hours=<x> ablation_runs=<n>``."""
    return (
        f"RESULT total_gpu_hours={plan['total_gpu_hours']:.2f} basis={'+'.join(plan['basis'])} "
        f"c10c={plan['c10c_s'][1].split(' ')[0]} unique_runs={plan['unique_runs']} "
        f"tables={len(plan['tables'])} "
        f"step_ms={plan['step_ms']:g} "
        f"ablation_gpu_hours={plan['ablation_gpu_hours']:.2f} ablation_runs={plan['unique_ablation_runs']}"
    )
