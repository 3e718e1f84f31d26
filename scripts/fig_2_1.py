"""Fig 2.1 of Dutta (2019): Poisson samples vs. Gumbel-softmax approximate samples for several K.

Histogram of ``--samples`` (10 000) draws from Poisson(``--lam`` = 2) and from the Gumbel-softmax
relaxation of §2.2.3 (eqs 2.10-2.12, :func:`bioreg.layers.noise.gumbel_softmax_poisson`) with K
categories (counts 0..K-1) for each ``--ks``. Small K truncates the distribution; as K grows the
approximation approaches the Poisson (the panel titles give the total-variation distance).

Writes ``fig_2_1.png`` and ``fig_2_1.pdf`` to ``--out-dir`` (default ``results/figures``), each
written atomically (temporary file + rename).

    python scripts/fig_2_1.py [--out-dir DIR] [--lam 2] [--ks 2 3 5 8] [--samples 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bioreg.io import save_figure
from bioreg.results.figures_ch2 import fig_poisson_gumbel


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="results/figures", type=Path)
    p.add_argument("--lam", type=float, default=2.0)
    p.add_argument("--ks", type=int, nargs="+", default=[2, 3, 5, 8])
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.lam <= 0 or min(args.ks) < 2 or args.samples < 1 or args.temperature <= 0:
        p.error("need --lam > 0, every K >= 2, --samples >= 1, --temperature > 0")
    fig = fig_poisson_gumbel(args.lam, args.ks, args.samples, args.seed, args.temperature)
    paths = save_figure(fig, args.out_dir, "fig_2_1", ("png", "pdf"), dpi=150, close=True)
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    main()
