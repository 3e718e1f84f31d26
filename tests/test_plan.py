"""scripts/plan.py: sweep parsing, the sources of seconds per image, concurrency parsing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plan():
    spec = importlib.util.spec_from_file_location("bioreg_plan", REPO / "scripts" / "plan.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bioreg_plan"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_sweep_params_count_experiments_and_seeds(plan):
    exps, seeds = plan.sweep_params(REPO / "conf" / "sweep" / "table_pp4.yaml")
    assert len(exps) == 10 and seeds == 5 and "resnet14_baseline" in exps  # Table 4: ResNet-14 + 9 PP settings


def test_seconds_per_image_sources_in_order(plan):
    bench = {"device": "cuda", "configs": [
        {"family": "resnet20", "epoch_s": 9.0, "images": 45000},
        {"family": "resnet56", "epoch_s": 27.0, "images": 45000},
        {"family": "vgg16", "epoch_s": 4.5, "images": 45000}]}
    fams = {"resnet20", "resnet32", "resnet56", "vgg16", "vgg11", "allconvnet"}
    s = plan.per_image_seconds(bench, {"vgg11": 1e-4}, 8.0, fams)
    assert s["resnet20"] == (pytest.approx(2e-4), "measured")
    # ResNet-32 interpolated linearly in depth between 20 (0.2 ms) and 56 (0.6 ms): 0.2 + 0.4 * 12/36
    assert s["resnet32"][0] == pytest.approx(2e-4 + 4e-4 * 12 / 36) and "interpolated" in s["resnet32"][1]
    assert s["vgg11"] == (1e-4, "records")
    assert s["allconvnet"] == (pytest.approx(8e-3 / 128), "estimate")
    assert plan.per_image_seconds(None, {}, 4.0, {"vgg16"})["vgg16"] == (pytest.approx(4e-3 / 128), "estimate")


def test_concurrency_option(plan):
    assert plan.parse_concurrency("vgg16=2, resnet20=4") == {"vgg16": 2, "resnet20": 4}
    with pytest.raises(SystemExit, match="family=N"):
        plan.parse_concurrency("vgg16")
    with pytest.raises(SystemExit, match="integer >= 1"):
        plan.parse_concurrency("vgg16=0")
