"""Dutta (2019) Ch. 3 over the run records: the driver behind ``scripts/correlation_analysis.py``
(bioreg.app.analyse_correlations) and its figures and Linear Exponential check
(bioreg.results.figures_ch3), on records holding real sections of a small VGG-11."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bioreg.app.analyse_correlations import Options, bins_file, run_analysis, same_settings
from bioreg.evaluate.correlation_analysis import CorrelationAnalysis
from bioreg.models import VGG11
from bioreg.results.figures_ch3 import EXPERIMENTS, linear_exponential_report, mean_grid, seed_line

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def sections() -> dict[tuple[str, int], dict]:
    """A real ``extra.correlation_analysis`` section (layers 3 and 9) per experiment and seed."""
    out = {}
    for i, exp in enumerate(EXPERIMENTS):
        for seed in SEEDS:
            torch.manual_seed(10 * i + seed)
            net = VGG11().double().eval()
            images = torch.rand(10, 3, 8, 8, dtype=torch.float64)
            ev = CorrelationAnalysis(layers=[3, 9], samples=2, batch=4, grid=(5, 7), dtype="float64")
            out[exp, seed] = {"layers": {n: r.section() for n, r in ev.run(net, images).items()}}
    return out


def _write(runs: Path, sections: dict, with_section: bool = True) -> None:
    for (exp, seed), sec in sections.items():
        rec = {"name": exp, "config_key": "k", "seed": seed, "status": "completed",
               "ckpt_dir": str(runs / "none"),
               "extra": {"correlation_analysis": sec} if with_section else {}}
        p = runs / exp / "k" / f"seed{seed}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(rec))


def test_figures_and_report_from_the_records(tmp_path, sections, capsys):
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    _write(runs, sections)
    opts = Options(results_dir=str(runs), seeds=list(SEEDS), layers=["9"], fig_dir=figs, figures_only=True)
    assert run_analysis(opts) == 0
    out = capsys.readouterr().out
    assert {f"fig_3_{i}.{e}" for i in (6, 7) for e in ("png", "pdf")} == {p.name for p in figs.iterdir()}
    assert out.count(" seed ") == len(sections) and "Input Mixup seed 1: layer9: max " in out
    assert "Linear Exponential column" in out and "closest reading:" in out
    # the figure shows the mean of the seeds' grids
    recs = [(str(i), {"extra": {"correlation_analysis": sections["vgg11_ch3_mixup", s]}})
            for i, s in enumerate(SEEDS)]
    d, k, g, n = mean_grid(recs, "layer9")
    want = np.mean([sections["vgg11_ch3_mixup", s]["layers"]["layer9"]["smoothed"]["g"] for s in SEEDS], 0)
    assert n == 2 and len(d) == 5 and len(k) == 7 and np.allclose(g, want)
    assert mean_grid(recs, "layer5") is None


def test_linear_exponential_report_names_the_closest_reading(sections):
    by_exp = {e: [(f"{e}{s}", {"extra": {"correlation_analysis": sections[e, s]}}) for s in SEEDS]
              for e in EXPERIMENTS}
    lines = linear_exponential_report(by_exp, ["layer3"])
    le = [sections[EXPERIMENTS[0], s]["layers"]["layer3"]["linear_exponential"] for s in SEEDS]
    grid_max = np.mean([x["grid"]["max"] for x in le])
    assert lines[0].startswith("  layer 3         grid: max ") and f"max {grid_max:.3f} (printed " in lines[0]
    assert "input_pixels" in lines[1] and lines[-1].split("closest reading: ")[1] in ("grid", "input_pixels")
    assert linear_exponential_report({}, ["layer3"]) == []


def test_a_section_is_reused_only_with_the_same_settings(sections):
    sec = sections[EXPERIMENTS[0], 0]
    want = Options(samples=2, batch=4, dtype="float64").settings()
    assert same_settings(sec, ["layer3", "layer9"], want)
    assert not same_settings(sec, ["layer3", "layer5"], want)
    assert not same_settings(sec, ["layer3"], {**want, "bandwidth": 0.5})
    assert not same_settings(None, ["layer3"], want)
    assert bins_file(Path("r/seed3.json")) == Path("r/seed3.correlation_bins.npz")
    assert seed_line("x", 2, sec, ["layer9"]).startswith("x seed 2: layer9: max ")


def test_a_record_without_its_checkpoint_is_one_error_line(tmp_path, sections, capsys):
    runs = tmp_path / "runs"
    _write(runs, sections, with_section=False)
    code = run_analysis(Options(results_dir=str(runs), seeds=[0], layers=["3"], fig_dir=tmp_path / "f"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "best.ckpt not found" in err[0]
    assert run_analysis(Options(results_dir=str(tmp_path / "empty"))) == 2
    assert "no completed record of vgg11_ch3_vanilla" in capsys.readouterr().err
