"""Dutta (2019) Ch. 2 figures that need no data or runs (``make figures-ch2``): Fig 2.1, Poisson samples vs
their Gumbel-softmax approximation (§2.2.3, eqs 2.10–2.12); Fig 2.2, target vs achieved correlation of
the Gaussian-copula Poisson noise (§2.2.4); Fig 2.3, the correlation function of eq 2.14. Each function
returns the matplotlib figure; ``scripts/fig_2_*.py`` save it (PNG and PDF, atomically)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bioreg.layers.correlation import CorrelationParams
from bioreg.layers.noise import gumbel_softmax_poisson, poisson_icdf_from_normal

__all__ = ["fig_poisson_gumbel", "achieved_correlation", "fig_copula_correlation", "fig_correlation_function"]


def fig_poisson_gumbel(lam: float, ks: list[int], samples: int, seed: int, temperature: float) -> Any:
    """Fig 2.1: histograms of ``samples`` Poisson(``lam``) draws and of the Gumbel-softmax relaxation
    with K categories for each K in ``ks`` (panel titles: total-variation distance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(seed)
    rates = torch.full((samples,), float(lam), dtype=torch.float64)
    pois = torch.poisson(rates, generator=gen).long().numpy()
    top = int(max(pois.max(), max(ks))) + 1
    bins = np.arange(top + 1)
    p_counts = np.bincount(pois, minlength=top)[:top]
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.0), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        g = gumbel_softmax_poisson(rates, k, temperature, generator=gen).long().numpy()
        g_counts = np.bincount(g, minlength=top)[:top]
        tv = 0.5 * np.abs(p_counts - g_counts).sum() / samples
        ax.bar(bins[:-1] - 0.2, p_counts, width=0.4, label="Poisson", color="tab:blue")
        ax.bar(bins[:-1] + 0.2, g_counts, width=0.4, label="Gumbel-softmax", color="tab:orange")
        ax.set_title(f"K = {k}  (TV = {tv:.3f})", fontsize=10)
        ax.set_xlabel("count")
        ax.set_xticks(bins[:-1])
    axes[0, 0].set_ylabel(f"frequency ({samples} samples)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Poisson(λ = {lam:g}) vs Gumbel-softmax approximation (τ = {temperature:g})", fontsize=11)
    fig.tight_layout()
    return fig


def achieved_correlation(rho: float, lam: float, samples: int, gen: torch.Generator) -> float:
    """Pearson correlation of ``samples`` Poisson(``lam``) pairs made by the Gaussian copula (§2.2.4) from
    normal pairs of correlation ``rho``."""
    z1 = torch.randn(samples, dtype=torch.float64, generator=gen)
    z2 = torch.randn(samples, dtype=torch.float64, generator=gen)
    x2 = rho * z1 + math.sqrt(max(1 - rho * rho, 0.0)) * z2
    rate = torch.full((samples,), float(lam), dtype=torch.float64)
    h = torch.stack([poisson_icdf_from_normal(z1, rate), poisson_icdf_from_normal(x2, rate)])
    return float(torch.corrcoef(h)[0, 1])


def fig_copula_correlation(lams: list[float], samples: int, seed: int) -> Any:
    """Fig 2.2: achieved (Poisson) vs target (Gaussian) correlation of the copula for each rate in
    ``lams``, on a grid of 20 targets in [0, 0.95]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(seed)
    rhos = np.linspace(0.0, 0.95, 20)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="achieved = target")
    for lam in lams:
        got = [achieved_correlation(float(r), lam, samples, gen) for r in rhos]
        ax.plot(rhos, got, "o-", ms=3, label=f"λ = {lam:g}")
    ax.set_xlabel("target correlation (normal samples)")
    ax.set_ylabel("achieved correlation (Poisson samples)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Gaussian copula: normal vs transformed Poisson", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_correlation_function(params: CorrelationParams, max_distance: float) -> Any:
    """Fig 2.3: eq 2.14 with ``params`` over distance (0 … ``max_distance`` pixels) and tuning
    similarity (−1 … 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
