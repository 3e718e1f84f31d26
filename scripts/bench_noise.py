"""Benchmark of the noise regularizers (Dutta 2019 §2.2): training-step time relative to the baseline.

Every model is built through the real insertion path
(:func:`bioreg.lit.module.place_regularizers`) and timed for one SGD training step (forward,
cross-entropy, backward, Nesterov SGD step) after warm-up; the configurations of one model are
interleaved round-robin over the repeats (so that load changes on a shared machine hit them alike)
and each is reported as the median, and as a ratio to the baseline of the same run:

* AllConvNet (Table 2.2) with a noise module after layer 1 (n = 10 x 32 x 32 = 10 240 units):
  baseline, UG, CG-structured, CG-dense, CP-structured;
* VGG-16 (``bioreg.models.VGG16``) layer 1 = point ``features.2`` (after the first conv's BN+ReLU,
  n = 64 x 32 x 32 = 65 536 units): baseline vs CG-structured; the dense sampler is not run there
  (it refuses n > 16 384) -- the memory it would need is printed instead;
* one Σ refresh + one batch of samples at n = 10 240, dense vs structured sampler.

The last line is ``RESULT cg_step_ratio_allconvnet=<x> cg_step_ratio_vgg16=<y>
dense_over_structured=<z>``.

    python scripts/bench_noise.py [--batch 128] [--repeats 5] [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bioreg.layers.correlation import CorrelationParams, build_sampler
from bioreg.lit.module import place_regularizers
from bioreg.models import VGG16, AllConvNet

NOISE = "bioreg.layers.noise."


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _entry(cls: str, at: str, **kw) -> dict:
    return {"noise": {"at": at, "_target_": NOISE + cls, **kw}}


def build(make_net: Callable[[], nn.Module], reg: dict | None, device: torch.device):
    torch.manual_seed(0)
    net = make_net()
    place_regularizers(net, reg or {}, (3, 32, 32))
    net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)
    return net, opt


def step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()


def time_steps(configs: dict, batch: int, device: torch.device, warmup: int, repeats: dict[str, int]) -> dict:
    """Median step time (s) per configuration; configurations interleaved round-robin."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    times: dict[str, list[float]] = {k: [] for k in configs}
    for name, (net, opt) in configs.items():
        for _ in range(warmup if name in repeats and repeats[name] > 0 else 0):
            step(net, opt, x, y)
    for r in range(max(repeats.values())):
        for name, (net, opt) in configs.items():
            if r >= repeats[name]:
                continue
            _sync(device)
            t0 = time.perf_counter()
            step(net, opt, x, y)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items() if v}


def time_sampler(kind: str, shape: tuple[int, int, int], batch: int, device: torch.device,
                 repeats: int) -> float:
    """Median time of one Σ refresh + one batch of samples."""
    torch.manual_seed(0)
    w = torch.randn(shape[0], 3, 3, 3, device=device) * 0.1
    s = build_sampler(kind, shape, CorrelationParams())
    s.refresh(w)  # warm-up (spatial caches, allocator)
    s.sample(batch)
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        s.refresh(w)
        s.sample(batch)
        _sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def time_module(entry: dict, make_net: Callable[[], nn.Module], batch: int, device: torch.device,
                repeats: int) -> float:
    """Median time (s) of the placed noise module alone: forward + backward on post-ReLU activations."""
    net, _ = build(make_net, entry, device)
    mod = next(iter(net.regularizers.values()))
    shape = mod.ctx.shape if getattr(mod, "ctx", None) is not None else None
    if shape is None:  # uncorrelated modules are not bound: measure the point's shape
        from bioreg.models.points import measure_shapes

        shape = measure_shapes(net, (3, 32, 32))[entry["noise"]["at"]]
    out = []
    for r in range(repeats + 1):
        a = torch.rand(batch, *shape, device=device).requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        mod(a).sum().backward()
        _sync(device)
        if r:
            out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median)")
    p.add_argument("--dense-repeats", type=int, default=2, help="timed steps for the (slow) dense sampler")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the shared 2-core machine is oversubscribed)")
    p.add_argument("--skip-dense", action="store_true",
                   help="skip the dense sampler: the CG-dense step and its refresh timing (O(n^3))")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(
        f"device={device} torch_threads={torch.get_num_threads()} batch={args.batch} repeats={args.repeats} "
        f"warmup={args.warmup} (median step time, ratio to the baseline of the same run)")

    # --- AllConvNet, layer 1 (n = 10 240)
    acn = {
        "baseline": build(AllConvNet, None, device),
        "UG": build(AllConvNet, _entry("UncorrelatedGaussian", "layer1"), device),
        "CG-structured": build(AllConvNet, _entry("CorrelatedGaussian", "layer1", sampler="structured"),
                               device),
        "CP-structured": build(AllConvNet, _entry("CorrelatedPoisson", "layer1", sampler="structured"),
                               device),
    }
    reps = {k: args.repeats for k in acn}
    if not args.skip_dense:
        acn["CG-dense"] = build(AllConvNet, _entry("CorrelatedGaussian", "layer1", sampler="dense"), device)
        reps["CG-dense"] = args.dense_repeats
    t_acn = time_steps(acn, args.batch, device, args.warmup, reps)
    print("AllConvNet layer1 (n=10240):")
    for k, v in t_acn.items():
        print(f"  {k:<15} {v * 1e3:10.1f} ms/step   x{v / t_acn['baseline']:.3f}")
    del acn
    # the module alone (less noisy than a difference of two step times on a shared machine)
    for k, (cls, kw) in {"UG": ("UncorrelatedGaussian", {}), "CG-structured": ("CorrelatedGaussian", {}),
                         "CP-structured": ("CorrelatedPoisson", {})}.items():
        t = time_module(_entry(cls, "layer1", **kw), AllConvNet, args.batch, device, args.repeats)
        print(f"  module only: {k:<15} {t * 1e3:8.1f} ms fwd+bwd = {100 * t / t_acn['baseline']:.1f} % of a "
              "baseline step")

    # --- VGG-16, layer 1 = features.2 (n = 65 536)
    vgg = {
        "baseline": build(VGG16, None, device),
        "CG-structured": build(VGG16, _entry("CorrelatedGaussian", "features.2", sampler="structured"),
                               device),
    }
    t_vgg = time_steps(vgg, args.batch, device, args.warmup, {k: args.repeats for k in vgg})
    del vgg
    t_mod_vgg = time_module(_entry("CorrelatedGaussian", "features.2"), VGG16, args.batch, device,
                            args.repeats)
    n_vgg = 64 * 32 * 32
    print("VGG-16 features.2 (n=65536):")
    for k, v in t_vgg.items():
        print(f"  {k:<15} {v * 1e3:10.1f} ms/step   x{v / t_vgg['baseline']:.3f}")
    print(f"  module only: CG-structured {t_mod_vgg * 1e3:8.1f} ms fwd+bwd = "
          f"{100 * t_mod_vgg / t_vgg['baseline']:.1f} % of a baseline step")
    print(f"  CG-dense        not run: Σ and its Cholesky factor need 2 n² floats = "
          f"{2 * n_vgg**2 * 8 / 2**30:.1f} GiB in float64 ({2 * n_vgg**2 * 4 / 2**30:.1f} GiB in float32)")

    # --- one refresh + one batch of samples, n = 10 240
    shape = (10, 32, 32)
    t_s = time_sampler("structured", shape, args.batch, device, args.repeats)
    t_d = float("nan")
    if not args.skip_dense:
        t_d = time_sampler("dense", shape, args.batch, device, args.dense_repeats)
    print(f"refresh + sample(batch={args.batch}) at n=10240: structured {t_s * 1e3:.1f} ms, "
          f"dense {t_d * 1e3:.1f} ms, dense/structured x{t_d / t_s:.1f}")

    res = {
        "cg_step_ratio_allconvnet": t_acn["CG-structured"] / t_acn["baseline"],
        "cg_step_ratio_vgg16": t_vgg["CG-structured"] / t_vgg["baseline"],
        "dense_over_structured": t_d / t_s,
    }
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in res.items()))
    return res


if __name__ == "__main__":
    main()
