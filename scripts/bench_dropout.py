"""Training-step cost of the Ch. 4 dropout variants in VGG-11 (Dutta 2019), relative to plain VGG-11.

Every model is built through ``bioreg.lit.module.place_regularizers`` (the real insertion path) from
the entries of ``conf/reg/<method>.yaml`` moved to ``layer1`` and ``layer8``; the shared training
state is set to the end of training (``progress = 1``) so the scheduled methods drop at their full
``drop_prob``. One step = forward + cross-entropy + backward + SGD step (momentum 0.9, weight decay
1e-3). Steps of all models are interleaved round-robin (so that load on a shared machine hits all
of them alike); after warm-up the median over ``--repeats`` rounds is taken per model.

Clock: on CPU the default is the process CPU time with one torch thread (``--clock process
--threads 1``), because wall time on a shared, oversubscribed machine measures the neighbours;
``--clock wall`` times wall-clock seconds (always used on CUDA, with synchronisation). The default
batch is 32, not 128: a VGG-11 step at batch 128 costs several CPU seconds, too slow for 11 models
x 7 rounds on a shared 2-core machine (``--batch-size 128`` works, it just takes longer).

Last line: ``RESULT worst_step_ratio=<x> method=<method@layer>`` (x = slowest median / plain median).
Usage: ``python scripts/bench_dropout.py [--batch-size 32] [--repeats 7] [--warmup 2] [--threads 1]
[--clock process|wall] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bioreg.lit.module import place_regularizers
from bioreg.models import VGG11

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["spatialdropout", "spatialdropoutmod", "dropblock", "dropblockrandom", "corrdrop"]
LAYERS = ["layer1", "layer8"]


def build(method: str | None, layer: str | None, device: str, seed: int = 0):
    torch.manual_seed(seed)
    net = VGG11().to(device)
    reg = {}
    if method is not None:
        reg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "reg" / f"{method}.yaml"))
        reg[method]["at"] = layer
    state = place_regularizers(net, reg, (3, 32, 32))
    state.epoch, state.max_epochs = 1, 1  # progress 1: full drop_prob
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    return net, opt


def step(net, opt, x, y, clock) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = clock()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    sync()
    return clock() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (0 = leave torch's default)")
    ap.add_argument("--clock", choices=["process", "wall"], default="process",
                    help="process CPU time (default on CPU) or wall-clock time (forced on CUDA)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    ap.add_argument("--layers", nargs="*", default=LAYERS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    clock_name = "wall" if dev.startswith("cuda") else args.clock
    clock = time.perf_counter if clock_name == "wall" else time.process_time
    print(f"torch {torch.__version__}, torch.set_num_threads({torch.get_num_threads()})"
          f"{' set by --threads' if args.threads else ' (default)'}, batch {args.batch_size}, "
          f"warm-up {args.warmup}, repeats {args.repeats}, device {dev}, clock {clock_name}")

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(10, (args.batch_size,), generator=g).to(dev)
    names = ["plain"] + [f"{m}@{lay}" for lay in args.layers for m in args.methods]
    models = {"plain": build(None, None, dev)}
    for lay in args.layers:
        for m in args.methods:
            models[f"{m}@{lay}"] = build(m, lay, dev)

    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.warmup + args.repeats):
        for n in names:
            dt = step(*models[n], x, y, clock)
            if r >= args.warmup:
                times[n].append(dt)

    base = statistics.median(times["plain"])
    print(f"{'model':<26} {'median s/step':>14} {'ratio':>7}   ({clock_name} time)")
    ratios = {}
    for n in names:
        med = statistics.median(times[n])
        ratios[n] = med / base
        print(f"{n:<26} {med:>14.4f} {ratios[n]:>7.3f}")
    worst = max((n for n in names if n != "plain"), key=ratios.__getitem__)
    print(f"RESULT worst_step_ratio={ratios[worst]:.3f} method={worst}")


if __name__ == "__main__":
    main()
