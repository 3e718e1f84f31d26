"""GPU-hours of every thesis table's sweep: runs x epochs x seconds per epoch / concurrency.

For each ``conf/sweep/<table>.yaml`` the script composes every experiment of the sweep (as
``train.py`` would) and reads its model, epochs, batch size, training/validation split and
evaluation suites. Seconds per training epoch come, per model family, from the first source
that has them:

1. ``measured``: a GPU benchmark file of ``scripts/bench_throughput.py`` (``--bench``, default
   ``results/bench/throughput_cuda.json``): seconds per training image of the real pipeline,
   scaled to the experiment's training split; ResNet depths that were not measured are
   interpolated linearly in depth between the measured ResNets;
2. ``records``: completed run records on a GPU under ``--records`` (``wall_time_s / max_epochs``,
   median per family; it includes evaluation, so it overestimates slightly);
3. ``estimate``: the README's H200 figure -- "a training step of these small CIFAR models takes
   4-8 ms at batch 128" -- at its upper end, 8 ms per 128 training images for every family
   (``--step-ms`` changes it; the lower end, 4 ms, halves every number).

Validation is one forward pass over the validation split per epoch (a third of a training step
per image). The CIFAR-10-C evaluation of a run (950 000 images) takes the benchmark's measured
time, else the issue's target of 30 s (an estimate). Attack evaluators (``eval=attacks``) are
not included. Runs are divided by the packing concurrency per family: measured by
``bench_throughput.py --concurrent N`` (``results/bench/packing_*_cuda.json``: the speedup of
the best N), else 1 (no packing assumed), or ``--concurrency family=N,...`` (N runs give N times
one run's throughput -- an assumption the user states).

A run shared by several tables (same experiment and seed) is trained once; the total counts
each unique run once. Last line: ``RESULT total_gpu_hours=<x> basis=<...> unique_runs=<n>``.

    python scripts/plan.py [--tables 2.5,pp4] [--seeds 5] [--bench PATH] [--records DIR]
        [--step-ms 8] [--concurrency vgg16=2,resnet20=4] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FULL_POOL = 50_000
STEP_MS_README = (4.0, 8.0)  # README: H200, one training step at batch 128 of these models
C10C_TARGET_S = 30.0  # issue target for one ResNet-20 on the 950 000 CIFAR-10-C images
C10C_IMAGES = 950_000


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


def describe(experiments: set[str]) -> dict[str, dict[str, Any]]:
    """Model family, epochs, split sizes and eval suites of each experiment (composed with Hydra)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from bioreg.data.base import resolve_count

    out = {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for e in sorted(experiments):
            cfg = compose("config", overrides=[f"+experiment={e}"])
            data = OmegaConf.to_container(cfg.data, resolve=True)
            n_val = resolve_count(data.get("val_size", 0), FULL_POOL) if "cifar10" in str(data["_target_"]) else 0
            out[e] = {
                "family": family(cfg.model._target_), "epochs": int(cfg.trainer.max_epochs),
                "batch_size": int(data["batch_size"]), "train_images": FULL_POOL - n_val, "val_images": n_val,
                "corruption": "corruption" in list(cfg.eval.suites),
                "evaluators": sorted((OmegaConf.to_container(cfg.eval, resolve=True).get("evaluators") or {}).keys()),
            }
    return out


def load_bench(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    b = json.loads(path.read_text())
    return b if b.get("device") == "cuda" else None


def per_image_seconds(bench: dict | None, records: dict[str, float], step_ms: float, fams: set[str]
                      ) -> dict[str, tuple[float, str]]:
    """Seconds per training image of each family and the basis of the number."""
    out: dict[str, tuple[float, str]] = {}
    if bench:
        meas = {}
        for c in bench.get("configs", []):
            fam = c.get("family") or family(c.get("model", ""))
            meas.setdefault(fam, []).append(c["epoch_s"] / c["images"])
        for fam, v in meas.items():
            out[fam] = (statistics.median(v), "measured")
        res = sorted((int(f[6:]), out[f][0]) for f in out if re.fullmatch(r"resnet\d+", f))
        for fam in fams:
            m = re.fullmatch(r"resnet(\d+)", fam)
            if fam not in out and m and len(res) >= 2:
                d = int(m.group(1))
                (d0, s0), (d1, s1) = res[0], res[-1]
                out[fam] = (s0 + (s1 - s0) * (d - d0) / (d1 - d0), "measured (depth-interpolated)")
    for fam in fams:
        if fam not in out and fam in records:
            out[fam] = (records[fam], "records")
    for fam in fams:
        if fam not in out:
            out[fam] = (step_ms / 1000.0 / 128.0, "estimate")
    return out


def record_seconds(root: Path, info: dict[str, dict]) -> dict[str, float]:
    """Seconds per training image per family from completed GPU records (wall time / epochs)."""
    per: dict[str, list[float]] = defaultdict(list)
    if not root.is_dir():
        return {}
    for p in root.rglob("seed*.json"):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        dev = str(r.get("device", ""))
        if r.get("status") != "completed" or dev.startswith("cpu") or not r.get("wall_time_s"):
            continue
        cfg = r.get("config") or {}
        fam = family((cfg.get("model") or {}).get("_target_", ""))
        epochs = int((cfg.get("trainer") or {}).get("max_epochs") or 0)
        data = cfg.get("data") or {}
        if not epochs or "cifar10" not in str(data.get("_target_", "")):
            continue
        from bioreg.data.base import resolve_count

        n_train = FULL_POOL - resolve_count(data.get("val_size", 0), FULL_POOL)
        per[fam].append(float(r["wall_time_s"]) / epochs / n_train)
    return {f: statistics.median(v) for f, v in per.items()}


def load_packing(folder: Path) -> dict[str, tuple[int, float]]:
    """Best measured packing (N, speedup) per family from ``packing_*_cuda.json`` files."""
    best: dict[str, tuple[int, float]] = {}
    for p in sorted(folder.glob("packing_*_cuda.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        pk = d.get("packing") or {}
        fam = pk.get("family")
        if not fam:
            continue
        if fam not in best or pk["packing_speedup"] > best[fam][1]:
            best[fam] = (int(pk["n"]), float(pk["packing_speedup"]))
    return best


def parse_concurrency(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise SystemExit(f"--concurrency: {part!r} is not family=N (e.g. vgg16=2)")
        k, v = part.split("=", 1)
        if not v.strip().isdigit() or int(v) < 1:
            raise SystemExit(f"--concurrency: N must be an integer >= 1, got {v!r} for {k}")
        out[k.strip()] = int(v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default=None, help="comma-separated table ids (2.5, n3.1, pp4; default: all)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per experiment (default: the sweep's, 5)")
    p.add_argument("--bench", default=str(REPO / "results/bench/throughput_cuda.json"))
    p.add_argument("--records", default=str(REPO / "results/runs"), help="run records (GPU wall times)")
    p.add_argument("--step-ms", type=float, default=STEP_MS_README[1],
                   help="estimated ms per training step of 128 images when nothing is measured (README: 4-8)")
    p.add_argument("--concurrency", default=None, help="family=N,... runs packed per GPU (default: measured, else 1)")
    p.add_argument("--json", default=None, help="also write the plan as JSON here")
    args = p.parse_args(argv)

    sweeps = sorted((REPO / "conf" / "sweep").glob("table_*.yaml"))
    ids = {s.stem[len("table_"):].replace("_", "."): s for s in sweeps}
    if args.tables:
        want = [t.strip() for t in args.tables.split(",") if t.strip()]
        bad = [t for t in want if t not in ids]
        if bad:
            p.error(f"unknown table(s) {', '.join(bad)}; valid: {', '.join(ids)}")
        ids = {t: ids[t] for t in want}
    tables = {t: sweep_params(path) for t, path in ids.items()}
    info = describe({e for exps, _ in tables.values() for e in exps})
    fams = {i["family"] for i in info.values()}
    bench = load_bench(Path(args.bench))
    rec = record_seconds(Path(args.records), info)
    sec_img = per_image_seconds(bench, rec, args.step_ms, fams)
    c10c_s, c10c_basis = ((bench["c10c"]["eval_s_full"], "measured") if bench and bench.get("c10c")
                          else (C10C_TARGET_S, "estimate (issue target)"))
    packing = load_packing(Path(args.bench).parent)
    user_conc = parse_concurrency(args.concurrency)

    def divisor(fam: str) -> tuple[float, str]:
        if fam in user_conc:
            return float(user_conc[fam]), f"N={user_conc[fam]} (given)"
        if fam in packing:
            n, sp = packing[fam]
            return sp, f"N={n} (measured x{sp:.2f})"
        return 1.0, "N=1 (not measured)"

    def run_hours(e: str) -> float:
        i = info[e]
        s = sec_img[i["family"]][0]
        epoch = s * (i["train_images"] + i["val_images"] / 3.0)
        return (epoch * i["epochs"] + (c10c_s if i["corruption"] else 0.0)) / 3600.0

    rows, unique = [], {}
    for t, (exps, n_seeds) in tables.items():
        n_seeds = args.seeds or n_seeds
        gpu_h = 0.0
        for e in exps:
            d, _ = divisor(info[e]["family"])
            h = run_hours(e) / d
            gpu_h += h * n_seeds
            for s in range(n_seeds):
                unique[(e, s)] = h
        epochs = sorted({info[e]["epochs"] for e in exps})
        famset = sorted({info[e]["family"] for e in exps})
        basis = sorted({sec_img[f][1] for f in famset})
        s_epoch = [sec_img[info[e]["family"]][0] * (info[e]["train_images"] + info[e]["val_images"] / 3) for e in exps]
        rows.append({"table": t, "experiments": len(exps), "seeds": n_seeds, "runs": len(exps) * n_seeds,
                     "epochs": epochs, "families": famset, "s_per_epoch": [min(s_epoch), max(s_epoch)],
                     "concurrency": sorted({divisor(f)[1] for f in famset}), "basis": basis, "gpu_hours": gpu_h})
    total = sum(unique.values())
    all_basis = sorted({sec_img[info[e]["family"]][1].split(" ")[0] for e, _ in unique})

    from rich.console import Console
    from rich.table import Table

    tab = Table(title="GPU-hours per thesis table (one GPU; runs x epochs x s/epoch / concurrency)")
    for col in ("table", "runs", "epochs", "families", "s/epoch", "concurrency", "basis", "GPU-h"):
        tab.add_column(col, justify="right" if col in ("runs", "s/epoch", "GPU-h") else "left")
    for r in rows:
        lo, hi = r["s_per_epoch"]
        tab.add_row(r["table"], f"{r['runs']} ({r['experiments']}x{r['seeds']})", "/".join(map(str, r["epochs"])),
                    ",".join(r["families"]), f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f}",
                    "; ".join(r["concurrency"]), ",".join(r["basis"]), f"{r['gpu_hours']:.2f}")
    tab.add_row("all (shared runs once)", str(len(unique)), "", "", "", "", "", f"{total:.2f}")
    con = Console(width=200)
    con.print(tab)
    print("seconds per training image by family: " + ", ".join(
        f"{f}={sec_img[f][0] * 1e3:.3f} ms ({sec_img[f][1]})" for f in sorted(fams)))
    if any(b == "estimate" for _, b in sec_img.values()):
        print(f"estimate = README's H200 figure, {args.step_ms:g} ms per training step of 128 images (README gives "
              f"4-8 ms; at 4 ms every estimated number halves); not measured on a GPU in this repository yet. "
              f"Measure: python scripts/bench_throughput.py --device cuda")
    print(f"CIFAR-10-C evaluation per run: {c10c_s:.1f} s ({c10c_basis}); attack evaluators not included")
    if args.json:
        from bioreg.io import atomic_write_json

        atomic_write_json(args.json, {"tables": rows, "total_gpu_hours": total, "unique_runs": len(unique),
                                      "seconds_per_image": {f: list(v) for f, v in sec_img.items()},
                                      "c10c_s": [c10c_s, c10c_basis], "step_ms": args.step_ms})
    print(f"RESULT total_gpu_hours={total:.2f} basis={'+'.join(all_basis)} c10c={c10c_basis.split(' ')[0]} "
          f"unique_runs={len(unique)} tables={len(rows)} step_ms={args.step_ms:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
