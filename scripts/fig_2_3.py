"""Figure 2.3 of Dutta (2019): correlation of eq 2.14 as a function of distance and tuning similarity.

    f(d, k) = [a - b d]^+ * exp((k - 1) / tau) + c,   a=0.225, b=0.0043, c=0.09, tau=1.87 (defaults)

Writes ``fig_2_3.png`` and ``fig_2_3.pdf`` to ``--out-dir`` (default ``results/figures``), each
written to a temporary name first and moved into place atomically.

    python scripts/fig_2_3.py [--out-dir DIR] [--a A --b B --c C --tau TAU] [--max-distance D]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bioreg.io import save_figure  # noqa: E402
from bioreg.layers.correlation import CorrelationParams  # noqa: E402


def make_figure(params: CorrelationParams, max_distance: float) -> plt.Figure:
    d = torch.linspace(0.0, max_distance, 301, dtype=torch.float64)
    k = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)
    dd, kk = torch.meshgrid(d, k, indexing="xy")
    f = params.value(params.distance_scale * dd, kk)  # eq 2.14 on the (distance, similarity) grid
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    mesh = ax.pcolormesh(d.numpy(), k.numpy(), f.numpy(), shading="auto", cmap="viridis", rasterized=True)
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label("correlation")
    if params.b > 0:
        zero = params.a / (params.b * params.distance_scale)
        if zero <= max_distance:
            ax.axvline(zero, color="w", lw=0.8, ls=":", label="spatial term reaches 0 (d = a/b)")
    ax.axvline(31 * math.sqrt(2), color="w", lw=0.8, ls="--", label="largest distance in a 32x32 map")
    ax.set_xlabel("distance between units (feature-map pixels)")
    ax.set_ylabel("tuning similarity k (cosine of kernels)")
    ax.set_title(
        f"Eq 2.14: a={params.a:g}, b={params.b:g}, c={params.c:g}, $\\tau$={params.tau:g}", fontsize=10
    )
    ax.legend(loc="lower left", fontsize=8, framealpha=0.5)
    return fig


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="results/figures", type=Path)
    defaults = CorrelationParams()
    for name in ("a", "b", "c", "tau", "distance_scale"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    p.add_argument("--max-distance", type=float, default=60.0, help="x-axis range in pixels")
    p.add_argument("--dpi", type=int, default=200)
    args = p.parse_args(argv)
    params = CorrelationParams(a=args.a, b=args.b, c=args.c, tau=args.tau, distance_scale=args.distance_scale)
    fig = make_figure(params, args.max_distance)
    out = save_figure(fig, args.out_dir, "fig_2_3", ("png", "pdf"), dpi=args.dpi, close=True)
    for path in out:
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
