#!/usr/bin/env python
"""Benchmark of the Ch. 3 correlation analysis (Dutta 2019, §3.2; src/bioreg/evaluate/correlation_analysis/).

Three measurements, last line ``RESULT peak_mb=<x> matmul_fraction=<y> max_abs_err=<z>``:

1. **Memory** — the layer-3 analysis of VGG-11 (N = 128·16·16 = 32 768 units) in a fresh child
   process; ``peak_mb`` is that process's peak resident set size (``ru_maxrss``), everything included
   (Python, torch, the model, Z, the tiles, the bins). Target ≤ 2048 MB. ``--samples``/``--batch``
   set S·B (default the full S = 100, B = 64; a smaller S only shrinks Z, ``S·B·N·4`` bytes, and the
   line ``full-size Z`` then says what S = 100 adds).
2. **Throughput** — in the same child: before every ``--every``-th tile of the layer-3 analysis, a
   plain ``torch.mm`` of exactly that tile's operands is timed, then the tile (the same product +
   its on-the-fly reduction); ``matmul_fraction`` is the median over those tiles of
   time(plain mm) / time(product + reduction), i.e. the tiled pipeline's throughput as a fraction of
   the plain product's, each pair measured back to back so that a shared machine's changing load
   hits both alike. Target ≥ 0.5 on CPU.
3. **Exactness** — VGG-11 layer 3 on 8×8 inputs (N = 128·4·4 = 2 048) in float64: the tiled
   statistics and the binned Nadaraya–Watson smoother (both kernels) against the naive computation
   (``numpy.corrcoef`` per image, averaged over the images where it is defined; NW over all
   N(N−1)/2 pairs). ``max_abs_err`` = the largest difference. Target ≤ 1e-6.

    python scripts/bench_correlation.py [--samples 100 --batch 64 --threads 1 --every 4 --device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    """Peak resident memory of this process: ``VmHWM`` (per address space, so it starts afresh at
    exec; ``ru_maxrss`` would inherit the parent's peak through fork), else ``ru_maxrss``."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(args: argparse.Namespace) -> dict:
    import torch

    from bioreg.evaluate.correlation_analysis import TiledReducer, collect_blocks, draw_inputs
    from bioreg.models import VGG11

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = VGG11().to(dev).eval()
    images = torch.rand(max(args.samples, args.batch) + 8, 3, 32, 32)
    fixed, partners = draw_inputs(len(images), args.samples, args.batch, seed=0)
    t0 = time.perf_counter()
    blocks = collect_blocks(model, "layer3", images, fixed, partners, dtype=torch.float32, device=dev)
    t_collect = time.perf_counter() - t0
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    red = TiledReducer(blocks, "exclude", args.tile_units)
    c = red.c
    side = red.pos_per_tile * c
    sb = blocks.zt.shape[1]

    zt = blocks.zt

    def timed(fn) -> float:
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        return time.perf_counter() - t

    # Every `every`-th tile: a plain torch.mm of exactly that tile's operands, timed right before the tile
    # (product + reduction), so both see the same machine load; fraction = median of the ratios.
    zt[:c] @ zt[:c].T  # warm-up
    ratios, mm_s, tile_s = [], 0.0, 0.0
    for t, (p0, p1, q0, q1) in enumerate(red.tiles()):
        if t % args.every == 0:
            a_, b_ = zt[p0 * c:p1 * c], zt[q0 * c:q1 * c]
            t_mm = timed(lambda a_=a_, b_=b_: a_ @ b_.T)
            t_tile = timed(lambda p0=p0, p1=p1, q0=q0, q1=q1: red._tile(p0, p1, q0, q1, sync))
            ratios.append(t_mm / t_tile)
            mm_s += t_mm
            tile_s += t_tile
        else:
            t_tile = timed(lambda p0=p0, p1=p1, q0=q0, q1=q1: red._tile(p0, p1, q0, q1, sync))
        red.total_s += t_tile
    macs = sum((p1 - p0) * c * (q1 - q0) * c * sb for p0, p1, q0, q1 in red.tiles())
    tiled_rate = macs / red.total_s
    st = red.stats()
    peak_mb = _peak_rss_mb()
    return {"n_units": blocks.zt.shape[0], "sb": sb, "tile_side": side, "tiles": len(red.tiles()),
            "t_collect": t_collect, "t_tiles": red.total_s, "t_matmul_in_tiles": red.matmul_s,
            "tiled_rate": tiled_rate, "sampled": len(ratios),
            "fraction": float(sorted(ratios)[len(ratios) // 2]),
            "fraction_sum": mm_s / tile_s, "peak_mb": peak_mb,
            "z_mb": blocks.zt.numel() * 4 / 2**20, "stats": st.as_dict()}


def exactness(threads: int) -> dict:
    import numpy as np
    import torch

    from bioreg.evaluate.correlation_analysis import (
        TiledReducer,
        collect_blocks,
        draw_inputs,
        nadaraya_watson,
        naive_pairs,
        naive_sigma_prime,
        smooth_grid,
    )
    from bioreg.models import VGG11

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = VGG11().double().eval()
    images = torch.rand(64, 3, 8, 8, dtype=torch.float64)
    S, B = 6, 16
    fixed, partners = draw_inputs(len(images), S, B, seed=3)
    blocks = collect_blocks(model, "layer3", images, fixed, partners, dtype=torch.float64)
    red = TiledReducer(blocks, "exclude", tile_units=512).run()
    st = red.stats()
    bins = red.bins(model.layer3.conv.weight)
    # naive: numpy.corrcoef per image, averaged where defined
    sig = naive_sigma_prime(model, "layer3", images, fixed, partners, "exclude")
    n = sig.shape[0]
    iu = np.triu_indices(n, 1)
    y = sig[iu]
    ok = np.isfinite(y)
    errs = {"max": abs(st.max - y[ok].max()), "min": abs(st.min - y[ok].min()),
            "mean": abs(st.mean - y[ok].mean()), "std": abs(st.std - y[ok].std())}
    # NW over all pairs at 60 query points, both kernels
    x_all, y_all = naive_pairs(sig, blocks.shape, model.layer3.conv.weight)
    dg = torch.linspace(0, float(bins.d.max()), 6, dtype=torch.float64)
    kg = torch.linspace(-1, 1, 10, dtype=torch.float64)
    q = torch.stack(torch.meshgrid(dg, kg, indexing="xy"), -1).reshape(-1, 2)
    for kernel in ("gaussian", "norm"):
        ref = nadaraya_watson(q, x_all, y_all, torch.ones_like(y_all), 0.25, kernel, chunk=1 << 24)
        got = smooth_grid(bins, dg, kg, 0.25, kernel).reshape(-1)
        errs[f"nw_{kernel}"] = float((ref - got).abs().max())
    return {"n_units": n, "S": S, "B": B, "errors": errs, "max_abs_err": max(errs.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100,
                    help="S of the layer-3 run (thesis: 100; less = faster, Z shrinks)")
    ap.add_argument("--batch", type=int, default=64, help="B of the layer-3 run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tile-units", type=int, default=2048)
    ap.add_argument("--every", type=int, default=4, help="time a plain torch.mm before every n-th tile")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.threads} thread(s); device {args.device}")
    cmd = [sys.executable, __file__, "--child", "--samples", str(args.samples), "--batch", str(args.batch),
           "--threads", str(args.threads), "--tile-units", str(args.tile_units), "--device", args.device,
           "--every", str(args.every)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return out.returncode
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ex = exactness(args.threads)
    print(f"exactness (N = {ex['n_units']}, S = {ex['S']}, B = {ex['B']}, float64): "
          + ", ".join(f"{k} {v:.2e}" for k, v in ex["errors"].items()))
    full_z = 100 * args.batch * r["n_units"] * 4 / 2**20
    print(f"layer 3: N = {r['n_units']}, S·B = {r['sb']} (S = {args.samples}, B = {args.batch}; "
          f"{r['sb'] / (100 * args.batch):.2f} of S = 100), {r['tiles']} tiles of side {r['tile_side']}")
    print(f"  collect {r['t_collect']:.1f} s, tiled product + reduction {r['t_tiles']:.1f} s "
          f"(of which the products {r['t_matmul_in_tiles']:.1f} s)")
    print(f"  throughput: tiled product + reduction {r['tiled_rate'] / 1e9:.2f} GMAC/s overall; on "
          f"{r['sampled']} sampled tiles, plain torch.mm of the same operands / (product + reduction): "
          f"median {r['fraction']:.3f}, "
          f"time-weighted {r['fraction_sum']:.3f} (target >= 0.5)")
    print(f"  peak RSS {r['peak_mb']:.0f} MB (target <= 2048); Z = {r['z_mb']:.0f} MB here, full-size Z "
          f"(S = 100) = {full_z:.0f} MB, i.e. about {r['peak_mb'] - r['z_mb'] + full_z:.0f} MB at S = 100")
    print(f"  Σ′ statistics (random-init VGG-11, random images): {r['stats']}")
    print(f"RESULT peak_mb={r['peak_mb']:.0f} matmul_fraction={r['fraction']:.3f} "
          f"max_abs_err={ex['max_abs_err']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
