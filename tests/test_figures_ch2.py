"""Dutta (2019) Figs 2.1-2.3 (bioreg.results.figures_ch2, ``make figures-ch2``): what each figure shows."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

from bioreg.layers.correlation import CorrelationParams
from bioreg.results.figures_ch2 import (
    achieved_correlation,
    fig_copula_correlation,
    fig_correlation_function,
    fig_poisson_gumbel,
)


def test_copula_correlation_is_below_the_target_and_closer_for_larger_rates():
    gen = torch.Generator().manual_seed(0)
    assert abs(achieved_correlation(0.0, 2.0, 20000, gen)) < 0.03  # 4 standard errors
    small, large = achieved_correlation(0.9, 0.5, 20000, gen), achieved_correlation(0.9, 10.0, 20000, gen)
    assert small < large < 0.9 and large > 0.85


def test_fig_2_1_approaches_the_poisson_as_k_grows():
    import matplotlib.pyplot as plt

    fig = fig_poisson_gumbel(2.0, [2, 3, 8], 4000, 0, 0.5)
    tv = [float(re.search(r"TV = ([0-9.]+)", ax.get_title()).group(1)) for ax in fig.axes]
    assert len(tv) == 3 and tv[0] > tv[1] > tv[2]
    plt.close(fig)
    fig = fig_copula_correlation([0.5, 10.0], 500, 0)
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["achieved = target", "λ = 0.5", "λ = 10"]
    plt.close(fig)


def test_fig_2_3_script_writes_png_and_pdf(tmp_path):
    import matplotlib.pyplot as plt

    fig = fig_correlation_function(CorrelationParams(), 60.0)
    assert "a=0.225" in fig.axes[0].get_title()
    plt.close(fig)
    path = Path(__file__).parents[1] / "scripts" / "fig_2_3.py"
    spec = importlib.util.spec_from_file_location("_fig_2_3", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    paths = script.main(["--out-dir", str(tmp_path), "--dpi", "50"])
    assert [p.name for p in paths] == ["fig_2_3.png", "fig_2_3.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
