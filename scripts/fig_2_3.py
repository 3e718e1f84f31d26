"""Figure 2.3 of Dutta (2019): correlation of eq 2.14 as a function of distance and tuning similarity.

    f(d, k) = [a - b d]^+ * exp((k - 1) / tau) + c,   a=0.225, b=0.0043, c=0.09, tau=1.87 (defaults)

Writes ``fig_2_3.png`` and ``fig_2_3.pdf`` to ``--out-dir`` (default ``results/figures``), each
written to a temporary name first and moved into place atomically.

    python scripts/fig_2_3.py [--out-dir DIR] [--a A --b B --c C --tau TAU] [--max-distance D]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bioreg.io import save_figure
from bioreg.layers.correlation import CorrelationParams
from bioreg.results.figures_ch2 import fig_correlation_function


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
    fig = fig_correlation_function(params, args.max_distance)
    out = save_figure(fig, args.out_dir, "fig_2_3", ("png", "pdf"), dpi=args.dpi, close=True)
    for path in out:
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
