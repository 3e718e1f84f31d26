"""Every GPU number of the project in one command, with a deadline per part (``make gpu-check``).

Run by ``scripts/gpu_check.sh`` with the node's own ``python3`` (no uv, no network; README "Running
on an offline GPU node"). Each part is a subprocess killed at its deadline, so the whole cannot
overrun: the budgets below add up to 455 s, plus start-up (installing the wheelhouse, about 10 s)
and the plan, within the 8 minutes one H100 is given. A part that hits its deadline reports what it
measured until then (the throughput files are written after every configuration) and ``deadline``.

Parts (``--size full`` on a GPU; ``--size tiny``: the same code paths on a few batches, what
``make gpu-check DEVICE=cpu`` and its test run, so the command cannot rot between GPU windows):

==================  ======  =========================================================================
part                budget  what (full size)
==================  ======  =========================================================================
gpu_tests           30 s    ``pytest -m gpu``: no host sync in graph-safe training steps, CUDA graphs
throughput          70 s    ``bench_throughput``: the 5 configurations, full epochs (45 000 images),
                            real pipeline vs pure compute: pipeline_ratio (target <= 1.15), images/s
compile             60 s    the same with ``trainer.compile=true`` (ResNet-20-PP, then AllConvNet+CG)
cudagraphs          60 s    ``trainer.compile=reduce-overhead`` (CUDA graphs), same configurations
c10c                40 s    CIFAR-10-C evaluation of one ResNet-20, 950 000 images (target <= 30 s)
noise               25 s    ``bench_noise`` at batch 128 (UG/CG/CP vs plain; target CG <= 1.10)
dropout             25 s    ``bench_dropout`` at batch 128 (target worst <= 1.15)
correlation         50 s    Ch. 3 analysis of all five layers of one VGG-11, S = 100 (target <= 60 s)
packing             70 s    N = 1, 2, 4, 8 concurrent runs of ResNet-20-PP and of AllConvNet + CG
                            (40 batches per epoch each): aggregate images/s, speedup, best N
plan                25 s    ``make plan`` from these measurements (basis=measured on a GPU)
==================  ======  =========================================================================

Outputs (at most 8 files; ``--out``, default ``$OUT`` when set, else ``results/bench/gpu_check``):
``gpu_check.json`` (every number), ``gpu_check.md`` (the summary), ``gpu_check.log`` (everything the
parts printed), ``plan.json`` (the plan); one ``RESULT part=<name> ...`` line per part on stdout and
a last ``RESULT gpu_check ...`` line.

    python scripts/gpu_check.py [--device cuda|cpu] [--size full|tiny] [--out DIR] [--parts a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PY = sys.executable
CPU_BUDGET_FACTOR = 4


@dataclass
class Part:
    name: str
    budget_s: float
    argv: list[list[str]]  # commands run one after the other within the budget
    status: str = "not run"
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # the RESULT lines its commands printed


@dataclass
class Ctx:
    device: str
    size: str
    tmp: Path
    log: Any  # the open log file

    @property
    def full(self) -> bool:
        return self.size == "full"

    def compile_mode(self, mode: str, cpu: str = "aot_eager") -> str:
        """On the CPU the compile parts capture graphs without code generation (``cpu``: aot_eager, which
        also traces the backward, or eager): Inductor needs minutes of CPU per model; the code path up
        to the compiler is the same."""
        return mode if self.device == "cuda" else cpu


# ------------------------------------------------------------------------------------------ the parts
def bench(ctx: Ctx, *args: str) -> list[str]:
    return [PY, str(SCRIPTS / "bench_throughput.py"), "--device", ctx.device, "--no-c10c", *args]


def plan_parts(ctx: Ctx) -> list[Part]:
    """The parts in the order they run (most needed first), with their commands at ``ctx.size``."""
    t, full = ctx.tmp, ctx.full
    five = ",".join(FIVE) if full else "resnet20_pp"
    compiled = "resnet20_pp,allconvnet_cg1" if full else "allconvnet_cg1"
    small = [] if full else ["--batches", "1", "--batch-size", "8"]
    tests = [
        PY,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "gpu",
        str(REPO / "tests" / "test_gpu.py"),
    ]
    c10c = [PY, str(SCRIPTS / "bench_throughput.py"), "--device", ctx.device, "--c10c-only", *small]
    c10c += ["--c10c-per-severity", "10000" if full else "2", "--out", str(t / "c10c.json")]
    noise = [PY, str(SCRIPTS / "bench_noise.py"), "--device", ctx.device, "--threads", "1"]
    noise += (
        ["--batch", "128", "--repeats", "5"] if full else ["--skip-dense", "--batch", "4", "--repeats", "1"]
    )
    dropout = [PY, str(SCRIPTS / "bench_dropout.py"), "--device", ctx.device, "--threads", "1"]
    dropout += (
        ["--batch-size", "128", "--repeats", "5", "--warmup", "2"]
        if full
        else ["--batch-size", "4", "--repeats", "1", "--warmup", "1", "--layers", "layer8"]
    )
    corr = [PY, str(Path(__file__)), "--correlation-child", "--device", ctx.device, "--size", ctx.size]
    plan = [PY, str(SCRIPTS / "plan.py"), "--bench", str(t / "plan_bench" / "throughput_cuda.json")]
    plan += ["--records", str(t / "no-records"), "--json", str(t / "plan.json")]
    plan += [] if full else ["--tables", "2.5,pp4"]  # tiny: two tables (composing all takes a while)
    return [
        Part("gpu_tests", 30, [tests]),
        Part("throughput", 70, [bench(ctx, "--configs", five, *small, "--out", str(t / "throughput.json"))]),
        Part("compile", 60, [bench(ctx, "--configs", compiled, "--compile", ctx.compile_mode("true", "eager"),
                                   *small, "--out", str(t / "compile.json"))]),
        Part("cudagraphs", 60, [bench(ctx, "--configs", compiled, "--compile",
                                      ctx.compile_mode("reduce-overhead"), *small,
                                      "--out", str(t / "cudagraphs.json"))]),
        Part("c10c", 40, [c10c]),
        Part("noise", 25, [noise]),
        Part("dropout", 25, [dropout]),
        Part("correlation", 50, [[*corr, "--out", str(t / "correlation.json")]]),
        Part("packing", 70, packing_commands(ctx)),
        Part("plan", 25, [plan]),
    ]


FIVE = ("allconvnet_cg1", "vgg11_corrdrop5", "vgg16_stmax_48_51", "resnet20_pp", "resnet56_pp")
PACK_CONFIGS = ("resnet20_pp", "allconvnet_cg1")


def packing_commands(ctx: Ctx) -> list[list[str]]:
    """One command per configuration: ``--pack-child`` runs 8 (tiny: 2) worker processes that build
    their run once, then measure the levels N = 1, 2, 4, 8 in time slots (workers 0..N-1 in slot N)."""
    levels = "1,2,4,8" if ctx.full else "1,2"
    configs = PACK_CONFIGS if ctx.full else PACK_CONFIGS[1:]
    return [
        [
            PY,
            str(Path(__file__)),
            "--pack-child",
            "--device",
            ctx.device,
            "--configs",
            c,
            "--levels",
            levels,
            "--batches",
            "40" if ctx.full else "1",
            "--batch-size",
            "0" if ctx.full else "8",
            "--out",
            str(ctx.tmp / f"pack_{c}.json"),
        ]
        for c in configs
    ]


# ------------------------------------------------------------------------------------------ running
def run_part(part: Part, ctx: Ctx) -> None:
    """Run the part's commands until its deadline (the process group is killed there). The CPU dry run
    gets four times the budgets: its deadlines guard against hangs, they are no speed target."""
    if ctx.device != "cuda":
        part.budget_s *= CPU_BUDGET_FACTOR
    deadline = time.monotonic() + part.budget_s
    t0 = time.monotonic()
    part.status = "ok"
    for argv in part.argv:
        left = deadline - time.monotonic()
        if left <= 1:
            part.status = "deadline"
            break
        code = run_logged(argv, left, ctx.log, part.lines)
        if code == "deadline":
            part.status = "deadline"
            break
        if code != 0:
            part.status = f"failed (exit {code})"
            if part.name != "packing":
                break
    part.seconds = time.monotonic() - t0


def run_logged(argv: list[str], timeout: float, log, results: list[str]) -> int | str:
    """``argv`` with its output copied to the log and to stdout; ``"deadline"`` if killed at ``timeout``."""
    log.write(f"\n$ {' '.join(argv)}   (deadline {timeout:.0f} s)\n")
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    end = time.monotonic() + timeout
    try:
        for line in _lines_until(proc, end):
            log.write(line)
            if line.startswith("RESULT"):
                results.append(line.strip())
            if line.startswith("RESULT") or "error" in line.lower()[:40]:
                sys.stdout.write(line)
                sys.stdout.flush()
        return proc.wait(timeout=max(0.1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.write(f"[killed at the deadline of {timeout:.0f} s]\n")
        return "deadline"


def _lines_until(proc: subprocess.Popen, end: float):
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                return
            continue
        line = proc.stdout.readline()
        if not line:
            return
        yield line


# ------------------------------------------------------------------------------------------ children
def correlation_child(args: argparse.Namespace) -> int:
    """The Ch. 3 analysis (Σ′ statistics, bins, smoothed g(d, k)) of all five thesis layers of one VGG-11."""
    import torch

    from bioreg.evaluate.correlation_analysis import THESIS_LAYERS, CorrelationAnalysis
    from bioreg.models import VGG11

    full = args.size == "full"
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = VGG11().to(dev).eval()
    images = torch.rand(10_000 if full else 64, 3, 32, 32)
    samples, batch = (100, 64) if full else (3, 8)
    # tiny: the two smallest of the five layers (the cost grows with the square of a layer's units)
    analysis = CorrelationAnalysis(layers=THESIS_LAYERS if full else (8, 9), samples=samples, batch=batch)
    t0 = time.perf_counter()
    res = analysis.run(model, images, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    out = {"layers": list(res), "samples": samples, "batch": batch, "seconds": secs, "device": dev.type}
    Path(args.out).write_text(json.dumps(out))
    print(f"RESULT correlation_s={secs:.2f} layers={len(res)} samples={samples} batch={batch}")
    return 0


def pack_child(args: argparse.Namespace) -> int:
    """Packing of one configuration: max(levels) workers build their run (model, data, optimizer) once;
    level N runs in its own time slot, workers 0..N-1 training one warm-up and one timed epoch at once.
    Aggregate images/s of level N = the sum of its workers' timed epochs; speedup = that / level 1."""
    levels = [int(n) for n in args.levels.split(",")]
    gpu = args.device == "cuda"
    start, slot = time.time() + (12.0 if gpu else 45.0), (4.5 if gpu else 20.0)
    with tempfile.TemporaryDirectory(prefix="bioreg-pack-") as tmp:
        procs = [
            subprocess.Popen(
                [
                    PY,
                    str(Path(__file__)),
                    "--pack-worker",
                    "--device",
                    args.device,
                    "--configs",
                    args.configs,
                    "--index",
                    str(i),
                    "--levels",
                    args.levels,
                    "--batches",
                    str(args.batches),
                    "--batch-size",
                    str(args.batch_size or 0),
                    "--start-at",
                    f"{start:.3f}",
                    "--slot",
                    str(slot),
                    "--out",
                    str(Path(tmp) / f"w{i}.json"),
                ],
                cwd=REPO,
            )
            for i in range(max(levels))
        ]
        codes = [p.wait() for p in procs]
        if any(codes):
            print(f"error: a packing worker failed (exit codes {codes})")
            return 1
        workers = [json.loads((Path(tmp) / f"w{i}.json").read_text()) for i in range(max(levels))]
    out = {"config": args.configs, "family": workers[0]["family"], "batches": args.batches, "levels": []}
    for n in levels:
        runs = [w["levels"][str(n)] for w in workers[:n]]
        agg = sum(r["images"] / r["epoch_s"] for r in runs)
        late = any(r["t_start"] > start + levels.index(n) * slot + slot for r in runs)
        each = [r["images"] / r["epoch_s"] for r in runs]
        out["levels"].append({"n": n, "aggregate_images_per_s": agg, "images_per_s": each, "late": late})
    one = out["levels"][0]["aggregate_images_per_s"]
    for lv in out["levels"]:
        lv["packing_speedup"] = lv["aggregate_images_per_s"] / one
    best = max(out["levels"], key=lambda lv: lv["packing_speedup"])
    out["best_n"], out["best_speedup"] = best["n"], best["packing_speedup"]
    Path(args.out).write_text(json.dumps(out))
    speedups = " ".join(f"n{lv['n']}={lv['packing_speedup']:.2f}" for lv in out["levels"])
    print(f"RESULT packing config={args.configs} {speedups} best_n={best['n']}")
    return 0


def pack_worker(args: argparse.Namespace) -> int:
    """One packed run: build once, then in the slot of every level N > index: a warm-up and a timed epoch."""
    sys.path.insert(0, str(SCRIPTS))
    import torch

    import bench_throughput as bt

    device = torch.device(args.device)
    extra = ["data.device_resident=true"] + (
        [f"data.batch_size={args.batch_size}"] if args.batch_size else []
    )
    cfg = bt.compose(bt.CONFIGS[args.configs], device, extra)
    data_cfg = {
        k: v for k, v in __import__("omegaconf").OmegaConf.to_container(cfg.data, resolve=True).items()
    }
    batch = int(data_cfg["batch_size"])
    dm = bt.synthetic_datamodule(data_cfg, args.batches * batch, batch)
    lit = bt.build_lit(cfg, dm)
    levels = [int(n) for n in args.levels.split(",")]
    out = {"family": bt.model_family(cfg.model._target_), "levels": {}}
    for k, n in enumerate(levels):
        if args.index >= n:
            continue
        time.sleep(max(0.0, args.start_at + k * args.slot - time.time()))
        t_start = time.time()
        (epoch_s,) = bt.real_epochs(cfg, dm, lit, device, args.batches, 2)
        out["levels"][str(n)] = {"epoch_s": epoch_s, "images": args.batches * batch, "t_start": t_start}
    Path(args.out).write_text(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------------------ results
def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def kv(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def summarise(part: Part, ctx: Ctx) -> str:
    """Fill ``part.result`` from its files and RESULT lines; the part's one RESULT line."""
    t = ctx.tmp
    if part.name == "gpu_tests":
        ctx.log.flush()
        tail = Path(ctx.log.name).read_text()[-3000:]  # pytest's summary line
        part.result = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
        detail = " ".join(f"{k}={v}" for k, v in part.result.items())
    elif part.name in ("throughput", "compile", "cudagraphs"):
        part.result = read_json(t / f"{part.name}.json")
        cfgs = part.result.get("configs", [])
        detail = " ".join(
            f"{c['config']}:ratio={c['pipeline_ratio']:.3f},img_s={c['images_per_s']:.0f}" for c in cfgs
        )
        if cfgs:
            detail += f" worst_pipeline_ratio={max(c['pipeline_ratio'] for c in cfgs):.3f}"
    elif part.name == "c10c":
        part.result = read_json(t / "c10c.json").get("c10c", {})
        detail = (
            (
                f"c10c_eval_s={part.result['eval_s']:.2f} images={part.result['images']} "
                f"full_950k_s={part.result['eval_s_full']:.1f}"
            )
            if part.result
            else ""
        )
    elif part.name in ("noise", "dropout"):
        part.result = {k: v for line in part.lines for k, v in kv(line).items()}
        detail = " ".join(f"{k}={v}" for k, v in part.result.items())
    elif part.name == "correlation":
        part.result = read_json(t / "correlation.json")
        detail = (
            f"correlation_s={part.result['seconds']:.2f} layers={len(part.result['layers'])}"
            if part.result
            else ""
        )
    elif part.name == "packing":
        part.result = {
            c: read_json(t / f"pack_{c}.json") for c in PACK_CONFIGS if (t / f"pack_{c}.json").exists()
        }
        detail = " ".join(
            f"{c}:best_n={r['best_n']},speedup={r['best_speedup']:.2f}" for c, r in part.result.items()
        )
    else:  # plan
        part.result = read_json(t / "plan.json")
        detail = " ".join(part.lines[-1].split()[1:]) if part.lines else ""
    status = part.status.split()[0]
    return f"RESULT part={part.name} status={status} seconds={part.seconds:.1f} {detail}".rstrip()


def plan_inputs(parts: dict[str, Part], ctx: Ctx) -> None:
    """The measured throughput (+ CIFAR-10-C time) and packing, as the files ``make plan`` reads."""
    folder = ctx.tmp / "plan_bench"
    folder.mkdir(exist_ok=True)
    bench = dict(parts["throughput"].result or {})
    if parts["c10c"].result:
        bench["c10c"] = parts["c10c"].result
    if bench:
        (folder / f"throughput_{ctx.device}.json").write_text(json.dumps(bench))
    for c, r in (parts["packing"].result or {}).items():
        best = {"family": r["family"], "n": r["best_n"], "packing_speedup": r["best_speedup"]}
        (folder / f"packing_{c}_{ctx.device}.json").write_text(json.dumps({"packing": best}))


def markdown(parts: list[Part], ctx: Ctx, header: dict[str, Any]) -> str:
    rows = [
        f"| {p.name} | {p.status} | {p.seconds:.1f} / {p.budget_s:.0f} | {p.lines[-1] if p.lines else ''} |"
        for p in parts
    ]
    note = "(budget: 480 s)" if ctx.device == "cuda" else f"(a dry run: budgets x{CPU_BUDGET_FACTOR})"
    return "\n".join(
        [
            f"# make gpu-check ({ctx.device}, size {ctx.size})",
            "",
            f"Device: {header['device_name']}; torch {header['torch']}; {header['date']}; "
            f"total {header['total_s']:.0f} s {note}",
            "",
            "| part | status | seconds / budget | last RESULT line |",
            "|---|---|---|---|",
            *rows,
            "",
            "Targets: pipeline_ratio <= 1.15 (throughput), CIFAR-10-C <= 30 s, CG step ratio <= 1.10, "
            "worst dropout step ratio <= 1.15, correlation analysis <= 60 s, total_gpu_hours <= 24. "
            "Details: gpu_check.json, "
            "gpu_check.log, plan.json.",
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cuda (default when one is there) or cpu")
    ap.add_argument(
        "--size", choices=["full", "tiny"], default=None, help="default: full on cuda, tiny on cpu"
    )
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "results" / "bench" / "gpu_check"))
    ap.add_argument("--parts", default=None, help="comma-separated subset of the parts (default: all)")
    for flag in ("--correlation-child", "--pack-child", "--pack-worker"):
        ap.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    for name, kind in (
        ("--configs", str),
        ("--levels", str),
        ("--batches", int),
        ("--batch-size", int),
        ("--index", int),
        ("--start-at", float),
        ("--slot", float),
    ):
        ap.add_argument(name, type=kind, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def part_doc(p: Part) -> dict[str, Any]:
    return {
        "status": p.status,
        "seconds": p.seconds,
        "budget_s": p.budget_s,
        "result": p.result,
        "result_lines": p.lines,
    }


def header_info(device: str) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    return {
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    for flag, child in (
        ("correlation_child", correlation_child),
        ("pack_child", pack_child),
        ("pack_worker", pack_worker),
    ):
        if getattr(args, flag):
            return child(args)
    size = args.size or ("full" if args.device == "cuda" else "tiny")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    header = header_info(args.device)
    with (
        tempfile.TemporaryDirectory(prefix="bioreg-gpu-check-") as tmp,
        open(out / "gpu_check.log", "w") as log,
    ):
        ctx = Ctx(args.device, size, Path(tmp), log)
        parts = plan_parts(ctx)
        wanted = set((args.parts or ",".join(p.name for p in parts)).split(","))
        names = [p.name for p in parts if p.name in wanted]
        budget = sum(p.budget_s for p in parts if p.name in wanted)
        print(
            f"gpu-check: {header['device_name']}, size {size}, parts {', '.join(names)}; "
            f"budgets {budget:.0f} s (x{CPU_BUDGET_FACTOR} on the CPU); writing {out}",
            flush=True,
        )
        for part in parts:
            if part.name not in wanted:
                continue
            if part.name == "plan":
                plan_inputs({p.name: p for p in parts}, ctx)
            run_part(part, ctx)
            print(summarise(part, ctx), flush=True)
        header["total_s"] = time.monotonic() - t0
        done = [p for p in parts if p.name in wanted]
        doc = {**header, "size": size, "parts": {p.name: part_doc(p) for p in done}}
        if (ctx.tmp / "plan.json").exists():
            (out / "plan.json").write_text((ctx.tmp / "plan.json").read_text())
    from bioreg.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "gpu_check.json", doc)
    atomic_write_text(out / "gpu_check.md", markdown(done, ctx, header))
    ok = sum(p.status == "ok" for p in done)
    total = header["total_s"]
    print(
        f"RESULT gpu_check device={args.device} size={size} parts_ok={ok}/{len(done)} "
        f"total_s={total:.0f} out={out}"
    )
    return 0 if ok == len(done) else 1


if __name__ == "__main__":
    sys.exit(main())
