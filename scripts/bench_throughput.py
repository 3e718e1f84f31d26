"""Training throughput against the pure-compute limit, and the CIFAR-10-C evaluation time.

For each of five model/regularizer configurations (the thesis experiments' own configs, composed
with Hydra as ``train.py`` does) the script

1. trains through the **real pipeline**: the experiment's CIFAR-10 data module (its batch size,
   split and augmentation; the images are synthetic uint8 noise of CIFAR-10's shape -- the files
   cannot be downloaded here, and pixel values do not change the speed) and a Lightning ``Trainer``
   with the run's precision and memory layout (``trainer=gpu`` on a GPU); the time of one
   training epoch after a warm-up epoch is the **real epoch time**;
2. times the **pure-compute limit**: the same LitClassifier network (same regularizers, layout,
   precision, optimizer), the same number of batches of the same size, already on the device,
   no augmentation, no Lightning, no logging;
3. reports images/s of the real epoch and ``pipeline_ratio = real / pure`` (1.0 = the data
   pipeline and the training loop cost nothing).

Then it evaluates one ResNet-20 on a CIFAR-10-C folder of the official format (19 ``.npy`` files
of uint8 (5 k, 32, 32, 3) + ``labels.npy``; synthetic pixels) through the data module's
corruption suite: ``c10c_eval_s``. Real size on a GPU (k = 10 000 per severity, 950 000
images); on the CPU a reduced k (stated) and the time scaled to the full size.

Configurations: AllConvNet + CG at layer 1 (``corr_gaussian_layer1``), VGG-11 + CorrDrop at
layer 5 (``vgg11_corrdrop_layer5``), VGG-16 + SpatiotemporalMax at 48/51 with Singh's
augmentation (``vgg16_spatiotemporalmax_48_51``), ResNet-20-PP (``resnet20_pushpull``),
ResNet-56-PP (``resnet56_pushpull``).

The epoch size is the real one on a GPU (the preset's training split of 50 000 images); on the
CPU it is ``--cpu-batches`` batches per epoch (default 2), stated in the output, and times are the
process's CPU seconds (``time.process_time``; run single-threaded, ``--threads 1``), because on a
shared CPU wall time measures the other processes. Real and pure epochs are measured alternately
``--repeats`` times and the minimum of each is used.

``--compile MODE`` sets ``trainer.compile`` (``true``, ``reduce-overhead`` = CUDA graphs, a backend);
compiled runs use whole batches only. ``--batches B`` shortens the epoch (packing, dry runs).
``--c10c-only`` runs only the CIFAR-10-C evaluation. ``make gpu-check`` (``scripts/gpu_check.py``)
drives all of these with deadlines.

``--concurrent N`` measures packing: N copies of this script run at once on the same device,
each on ``--configs`` (one family), and the aggregate images/s of their real epochs is printed
(``packing_speedup`` = aggregate / single-run images/s).

Output: a JSON file (default ``results/bench/throughput_<device>.json``, with ``--concurrent``
``results/bench/packing_<config>_n<N>_<device>.json``; both read by ``scripts/plan.py``) and a last line
``RESULT device=<cpu|cuda> worst_pipeline_ratio=<x> c10c_eval_s=<y> ...``.

    python scripts/bench_throughput.py [--device auto|cpu|cuda] [--configs a,b] [--repeats 1]
        [--cpu-batches 2] [--c10c-per-severity K] [--concurrent N] [--out PATH] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "allconvnet_cg1": "corr_gaussian_layer1",
    "vgg11_corrdrop5": "vgg11_corrdrop_layer5",
    "vgg16_stmax_48_51": "vgg16_spatiotemporalmax_48_51",
    "resnet20_pp": "resnet20_pushpull",
    "resnet56_pp": "resnet56_pushpull",
}
C10C_EXPERIMENT = "resnet20_baseline"
FULL_TRAIN_POOL = 50_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """Wall time on a GPU (after a device sync); on the CPU this process's CPU time, so that other
    processes on a shared machine do not enter the ratio (the run is single-threaded: --threads 1)."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def compose(experiment: str, device: torch.device, extra: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    over = [f"+experiment={experiment}", "logger=none"]
    if device.type == "cuda":
        over.append("trainer=gpu")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hcompose("config", overrides=[*over, *extra])


def synthetic_datamodule(data_cfg: dict, n_train: int, n_val: int, n_test: int = 100,
                         c10c_dir: str | None = None,
                         test_labels: np.ndarray | None = None):
    """The experiment's CIFAR10DataModule (real class, real split/augmentation/loaders) on synthetic
    uint8 images of CIFAR-10's shape: ``n_train`` + ``n_val`` training-pool images, ``n_test`` test images."""
    import bioreg.data.cifar10 as c10
    from bioreg.data.cifar10c import CIFAR10CLayout

    g = torch.Generator().manual_seed(0)
    pool = n_train + n_val

    class SyntheticCIFAR10(c10.CIFAR10DataModule):
        N_TRAIN = pool

        def prepare_data(self) -> None:  # nothing to download or verify
            pass

        def _load(self, train: bool):
            n = pool if train else n_test
            x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
            if not train and test_labels is not None:
                return x, torch.as_tensor(test_labels, dtype=torch.long)
            return x, torch.arange(n) % 10

    if test_labels is not None:
        SyntheticCIFAR10.CIFAR10C_LAYOUT = CIFAR10CLayout(n_per_severity=n_test, md5={})
    kw = {k: v for k, v in data_cfg.items() if k != "_target_"}
    kw.update(val_size=n_val, download=False)
    if c10c_dir is not None:
        kw["cifar10c_dir"] = c10c_dir
    verify = c10.verify_cifar10
    c10.verify_cifar10 = lambda *a, **k: None  # synthetic: there are no files to check
    try:
        dm = SyntheticCIFAR10(**kw)
        dm.setup("fit")
    finally:
        c10.verify_cifar10 = verify
    return dm


def build_lit(cfg, dm):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from bioreg.lit.module import LitClassifier
    from bioreg.lit.perf import configure_performance

    torch.manual_seed(0)
    net = instantiate(cfg.model, _convert_="all")
    lit = LitClassifier(net=net, mean=dm.mean, std=dm.std,
                        optim=OmegaConf.to_container(cfg.optim, resolve=True),
                        reg=OmegaConf.to_container(cfg.reg, resolve=True), input_shape=tuple(dm.input_shape))
    configure_performance(lit, bool(cfg.trainer.get("channels_last")), cfg.trainer.get("compile") or False)
    return lit


class EpochTimer:
    """Lightning callback: wall time of each training epoch (device synchronised at both ends)."""

    def __init__(self) -> None:
        import lightning as L

        class _CB(L.Callback):
            def __init__(cb) -> None:
                cb.times: list[float] = []

            def on_train_epoch_start(cb, trainer, pl_module) -> None:
                sync(pl_module.device)
                cb.t0 = clock(pl_module.device)

            def on_train_epoch_end(cb, trainer, pl_module) -> None:
                sync(pl_module.device)
                cb.times.append(clock(pl_module.device) - cb.t0)

        self.cb = _CB()


def real_epochs(cfg, dm, lit, device: torch.device, n_batches: int, epochs: int) -> list[float]:
    """Times of ``epochs`` training epochs through the Trainer (the first is warm-up, dropped)."""
    import lightning as L

    timer = EpochTimer().cb
    tr = cfg.trainer
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=tr.precision,
        benchmark=bool(tr.benchmark), max_epochs=epochs, limit_train_batches=n_batches, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(lit, datamodule=dm)
    return timer.times[1:]


def pure_epoch(lit, device: torch.device, batch: int, n_batches: int, precision: str) -> float:
    """One epoch of the same network and optimizer on batches already on the device: the limit."""
    import torch.nn.functional as F

    from bioreg.layers.base import prepare_step
    from bioreg.lit.optim import build_optimizer

    model = lit.model.to(device).train()
    opt = build_optimizer(model, lit.optim_cfg)
    g = torch.Generator(device=device).manual_seed(1)
    xs = [torch.rand(batch, 3, 32, 32, device=device, generator=g) for _ in range(n_batches)]
    ys = [torch.randint(0, 10, (batch,), device=device, generator=g) for _ in range(n_batches)]
    amp = precision.startswith("bf16") or precision.startswith("16")
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16

    modules = list(model.modules())

    def step(x, y):
        if lit.state.graph_safe:  # compiled: the per-step host work the LitClassifier does (layers/base.py)
            prepare_step(modules)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(xs[0], ys[0])  # warm-up (cuDNN autotuning, lazy state)
    sync(device)
    t0 = clock(device)
    for x, y in zip(xs, ys, strict=True):
        step(x, y)
    sync(device)
    return clock(device) - t0


def bench_config(key: str, device: torch.device, args) -> dict[str, Any]:
    extra = [f"data.device_resident={args.device_resident}", f"data.num_workers={args.num_workers}"]
    if args.batch_size:
        extra.append(f"data.batch_size={args.batch_size}")
    if args.compile:
        extra.append(f"trainer.compile={args.compile}")
    cfg = compose(CONFIGS[key], device, extra)
    from omegaconf import OmegaConf

    from bioreg.data.base import resolve_count

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    batch = int(data_cfg["batch_size"])
    if device.type == "cuda" and not args.batches:
        n_val = resolve_count(data_cfg["val_size"], FULL_TRAIN_POOL)
        n_train = FULL_TRAIN_POOL - n_val
        # compiled: whole batches only (the last, smaller one would be one more compilation to time)
        n_batches = n_train // batch if args.compile else -(-n_train // batch)
    else:
        n_batches = args.batches or args.cpu_batches
        n_train, n_val = n_batches * batch, batch
    dm = synthetic_datamodule(data_cfg, n_train, n_val)
    lit = build_lit(cfg, dm)
    n_train = min(n_train, n_batches * batch)
    if args.start_at:  # packing: the concurrent runs start their epochs together
        time.sleep(max(0.0, args.start_at - time.time()))
    real, pure = [], []
    for _ in range(args.repeats):  # alternate, so that load changes hit both alike
        real += real_epochs(cfg, dm, lit, device, n_batches, 2)
        pure.append(pure_epoch(lit, device, batch, n_batches, str(cfg.trainer.precision)))
    r, p = min(real), min(pure)
    full_train = FULL_TRAIN_POOL - resolve_count(data_cfg["val_size"], FULL_TRAIN_POOL)
    out = {
        "config": key, "experiment": CONFIGS[key], "model": str(cfg.model._target_).rsplit(".", 1)[-1],
        "family": model_family(cfg.model._target_), "batch_size": batch, "batches": n_batches,
        "images": n_train,
        "augment": data_cfg.get("augment"), "device_resident": dm.uses_device(),
        "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.trainer.get("channels_last")), "epoch_s": r, "pure_s": p,
        "epoch_s_all": real, "pure_s_all": pure, "images_per_s": n_train / r,
        "pure_images_per_s": n_train / p,
        "pipeline_ratio": r / p, "full_epoch_images": full_train,
        "s_per_full_epoch": r * full_train / n_train,
        "max_epochs": int(cfg.trainer.max_epochs), "compile": args.compile or False,
    }  # fmt: skip
    print(
        f"{key:20s} {out['model']:10s} batch {batch:4d} x {n_batches:4d}: real {r:8.3f} s  pure {p:8.3f} s  "
        f"ratio {r / p:6.3f}  {n_train / r:9.0f} img/s  (full epoch ~{out['s_per_full_epoch']:.1f} s)",
        flush=True)
    del lit, dm
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def model_family(target: str) -> str:
    """``bioreg.models.VGG11`` -> ``vgg11`` (the key bioreg.results.plan matches experiments by)."""
    return str(target).rsplit(".", 1)[-1].lower()


def bench_c10c(device: torch.device, k: int, args) -> dict[str, Any]:
    """CIFAR-10-C evaluation of one ResNet-20 through the data module's corruption suite."""
    from omegaconf import OmegaConf

    from bioreg.data.corruptions import CIFAR10C_CORRUPTIONS
    from bioreg.evaluate.core import evaluate_sets

    cfg = compose(C10C_EXPERIMENT, device, [f"data.device_resident={args.device_resident}",
                                            f"data.num_workers={args.num_workers}"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=k)
    with tempfile.TemporaryDirectory(prefix="bioreg-c10c-") as tmp:
        folder = Path(tmp) / "CIFAR-10-C"
        folder.mkdir()
        np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
        block = rng.integers(0, 256, size=(5 * k, 32, 32, 3), dtype=np.uint8)
        for i, c in enumerate(CIFAR10C_CORRUPTIONS):
            np.save(folder / f"{c}.npy", np.roll(block, i, axis=0))
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        dm = synthetic_datamodule(data_cfg, 256, 64, n_test=k, c10c_dir=tmp, test_labels=labels)
        lit = build_lit(cfg, dm)
        dm.device = device  # as the Trainer's device would be after training
        model = lit.model.to(device).eval()
        evaluate_sets(model, dm, ["clean"], device, progress=False)  # warm-up
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = evaluate_sets(model, dm, ["corruption"], device, progress=False)
        sync(device)
        secs, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    n = sum(int(m["n"]) for m in metrics.values())
    full = 19 * 5 * 10_000
    out = {"model": "resnet20", "per_severity": k, "images": n, "eval_s": secs, "images_per_s": n / secs,
           "eval_s_full": secs * full / n, "eval_cpu_s": cpu_s, "device_resident": dm.uses_device()}
    print(
        f"CIFAR-10-C eval, ResNet-20: {n} images in {secs:.2f} s wall, {cpu_s:.2f} s CPU ({n / secs:.0f} "
        f"img/s; full 950 000 images ~{out['eval_s_full']:.1f} s)", flush=True)
    return out


def run_concurrent(args, device: torch.device) -> dict[str, Any]:
    """N copies of this script on one config at once: aggregate images/s vs a single run."""
    outs = []
    with tempfile.TemporaryDirectory(prefix="bioreg-pack-") as tmp:
        base = [sys.executable, __file__, "--device", device.type, "--configs", args.configs, "--repeats",
                str(args.repeats), "--cpu-batches", str(args.cpu_batches), "--no-c10c",
                "--device-resident", str(args.device_resident), "--num-workers", str(args.num_workers)]
        single = Path(tmp) / "single.json"
        subprocess.run([*base, "--out", str(single)], check=True, stdout=subprocess.DEVNULL)
        procs = [
            subprocess.Popen([*base, "--out", str(Path(tmp) / f"run{i}.json")], stdout=subprocess.DEVNULL)
            for i in range(args.concurrent)]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"a concurrent run failed with status {p.returncode}")
        first = json.loads(single.read_text())["configs"][0]
        one, fam = first["images_per_s"], first["family"]
        for i in range(args.concurrent):
            outs.append(json.loads((Path(tmp) / f"run{i}.json").read_text())["configs"][0]["images_per_s"])
    agg = sum(outs)
    return {"config": args.configs, "family": fam, "n": args.concurrent, "single_images_per_s": one,
            "images_per_s": outs,
            "aggregate_images_per_s": agg, "packing_speedup": agg / one}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--repeats", type=int, default=1, help="alternating real/pure measurements (min is used)")
    p.add_argument("--cpu-batches", type=int, default=2, help="batches per epoch on the CPU (reduced epoch)")
    p.add_argument("--c10c-per-severity", type=int, default=None,
                   help="CIFAR-10-C images per corruption and severity (default: 10000 on cuda, 100 on cpu)")
    p.add_argument("--no-c10c", action="store_true", help="skip the CIFAR-10-C evaluation")
    p.add_argument("--device-resident", default="true", choices=["true", "false", "auto"],
                   help="data.device_resident of the real pipeline (default true: the path under test)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="data.num_workers (used when not device-resident)")
    p.add_argument("--concurrent", type=int, default=0,
                   help="measure N concurrent runs of --configs (one config)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="JSON output (default results/bench/throughput_<device>.json)")
    p.add_argument("--compile", default=None, help="trainer.compile (true, reduce-overhead, aot_eager, ...)")
    p.add_argument("--batches", type=int, default=None, help="batches per epoch (default: full on a GPU)")
    p.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)  # packing: time.time()
    p.add_argument("--c10c-only", action="store_true", help="only the CIFAR-10-C evaluation")
    p.add_argument("--batch-size", type=int, default=None, help="data.batch_size (default: the preset's)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    bad = [k for k in keys if k not in CONFIGS]
    if bad:
        p.error(f"unknown config(s) {', '.join(bad)}; valid: {', '.join(CONFIGS)}")
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        (f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
         f"{os.cpu_count()} cores)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"device: {name}; load average at start: {load}", flush=True)
    if device.type == "cpu":
        print(f"reduced epoch on the CPU: {args.batches or args.cpu_batches} batches per epoch; "
              "epoch times are this process's CPU seconds (the machine may be shared)", flush=True)
    result: dict[str, Any] = {"device": device.type, "device_name": name, "torch": torch.__version__,
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "load_average": load}
    if args.concurrent:
        if len(keys) != 1:
            p.error("--concurrent N needs exactly one --configs entry (one family)")
        pack = run_concurrent(args, device)
        result["packing"] = pack
        print(
            f"packing {keys[0]}: {pack['n']} concurrent runs, aggregate {pack['aggregate_images_per_s']:.0f} "
            f"img/s, single {pack['single_images_per_s']:.0f} img/s, speedup {pack['packing_speedup']:.2f}")
        write(result, args, device)
        print(f"RESULT device={device.type} config={keys[0]} concurrent={pack['n']} "
              f"packing_speedup={pack['packing_speedup']:.3f} "
              f"aggregate_images_per_s={pack['aggregate_images_per_s']:.0f}")
        return 0
    result["configs"] = []
    for k in [] if args.c10c_only else keys:  # written after each config: a deadline keeps what was measured
        result["configs"].append(bench_config(k, device, args))
        write(result, args, device)
    if not args.no_c10c:
        k = args.c10c_per_severity or (10_000 if device.type == "cuda" else 100)
        result["c10c"] = bench_c10c(device, k, args)
    result["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write(result, args, device)
    c10c = result.get("c10c")
    if not result["configs"]:
        print(f"RESULT device={device.type} c10c_eval_s={c10c['eval_s']:.2f} c10c_images={c10c['images']} "
              f"c10c_eval_s_full_est={c10c['eval_s_full']:.1f}")
        return 0
    worst = max(result["configs"], key=lambda c: c["pipeline_ratio"])
    result["worst_pipeline_ratio"] = worst["pipeline_ratio"]
    result["worst_config"] = worst["config"]
    write(result, args, device)
    size = "full" if device.type == "cuda" and not args.batches else \
        f"{args.batches or args.cpu_batches}_batches_per_epoch"
    tail = (
        f" c10c_eval_s={c10c['eval_s']:.2f} c10c_images={c10c['images']} "
        f"c10c_eval_s_full_est={c10c['eval_s_full']:.1f}"
        if c10c else " c10c_eval_s=nan")
    print(f"RESULT device={device.type} worst_pipeline_ratio={worst['pipeline_ratio']:.3f} "
          f"worst_config={worst['config']}{tail} epoch_size={size} "
          f"median_images_per_s={statistics.median(c['images_per_s'] for c in result['configs']):.0f}")
    return 0


def write(result: dict, args, device: torch.device) -> None:
    from bioreg.io import atomic_write_json

    name = (f"packing_{args.configs}_n{args.concurrent}_{device.type}.json" if args.concurrent
            else f"throughput_{device.type}.json")
    out = Path(args.out) if args.out else REPO / "results" / "bench" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
