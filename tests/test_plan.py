"""bioreg.results.plan (make plan): sweep parsing, the sources of seconds per image, concurrency, packing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreg.results import plan as plan_module

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plan():
    return plan_module


def test_sweep_params_count_experiments_and_seeds(plan):
    path = REPO / "conf" / "sweep" / "table_pp4.yaml"
    exps, seeds = plan.sweep_params(path)
    # Table 4: ResNet-14 + 9 PP settings, and the authors'-protocol reading of one of them (an ablation)
    assert len(exps) == 11 and seeds == 5 and "resnet14_baseline" in exps
    assert plan.ablation_experiments(path) == ["resnet14_pushpull_h2_a10_authors"]


def test_ablation_runs_are_listed_apart(plan):
    """make plan: a table's own runs and hours, and apart its ablation runs (they never enter the total)."""
    out = plan.make_plan(plan.PlanInputs(conf_dir=REPO / "conf", tables=["pp2", "2.5"]))
    rows = {r["table"]: r for r in out["tables"]}
    assert rows["pp2"]["runs"] == 40 and rows["pp2"]["ablation_runs"] == 5
    assert rows["pp2"]["ablation_experiments"] == ["resnet20_pushpull_authors"]
    assert rows["2.5"]["ablation_experiments"] == ["uncorr_gaussian_std_layer1", "corr_gaussian_std_layer1"]
    assert out["unique_runs"] == 40 + 25 and out["unique_ablation_runs"] == 5 + 10
    assert out["total_gpu_hours"] == pytest.approx(rows["pp2"]["gpu_hours"] + rows["2.5"]["gpu_hours"])
    assert out["ablation_gpu_hours"] == pytest.approx(
        rows["pp2"]["ablation_gpu_hours"] + rows["2.5"]["ablation_gpu_hours"])
    assert out["ablation_gpu_hours"] > 0
    # the authors' protocol trains on all 50 000 images, the thesis's on 45 000
    info = plan.describe({"resnet20_pushpull", "resnet20_pushpull_authors"}, REPO / "conf")
    assert info["resnet20_pushpull_authors"]["train_images"] == 50_000
    assert info["resnet20_pushpull"]["train_images"] == 45_000
    assert "ablation_gpu_hours=" in plan.result_line(out)


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
    assert plan.per_image_seconds(None, {}, 4.0, {"vgg16"})["vgg16"] == (pytest.approx(4e-3 / 128),
                                                                         "estimate")


def test_concurrency_option(plan):
    assert plan.parse_concurrency("vgg16=2, resnet20=4") == {"vgg16": 2, "resnet20": 4}
    with pytest.raises(plan.PlanError, match="family=N"):
        plan.parse_concurrency("vgg16")
    with pytest.raises(plan.PlanError, match="integer >= 1"):
        plan.parse_concurrency("vgg16=0")


def test_best_packing_takes_the_largest_measured_speedup(plan):
    entries = [{"family": "resnet20", "n": 2, "packing_speedup": 1.7}, {"family": "resnet20", "n": 4,
               "packing_speedup": 2.6}, {"family": "resnet20", "n": 8, "packing_speedup": 2.4},
               {"family": "allconvnet", "n": 1, "packing_speedup": 1.0}]
    assert plan.best_packing(entries) == {"resnet20": (4, 2.6), "allconvnet": (1, 1.0)}


def test_measured_plan_divides_by_packing_and_names_its_basis(plan):
    """Table pp2 (ResNet-20/32/44/56, baseline and push-pull, 5 seeds) from a measured bench (ResNet-20
    and 56; 32 and 44 interpolated in depth), a measured CIFAR-10-C time and a measured packing of
    ResNet-20: each run is epochs x s/epoch + CIFAR-10-C, divided by its family's speedup."""
    bench = {"device": "cuda", "c10c": {"eval_s_full": 20.0}, "configs": [
        {"family": "resnet20", "epoch_s": 4.5, "images": 45000},
        {"family": "resnet56", "epoch_s": 9.0, "images": 45000}]}
    inp = plan.PlanInputs(conf_dir=REPO / "conf", tables=["pp2"], bench=bench, packing={"resnet20": (4, 2.5)})
    out = plan.make_plan(inp)
    (row,) = out["tables"]
    assert out["basis"] == ["measured"] and out["c10c_s"] == [20.0, "measured"]
    assert row["runs"] == out["unique_runs"] == 40
    info = plan.describe({"resnet20_baseline"}, REPO / "conf")["resnet20_baseline"]
    images = info["train_images"] + info["val_images"] / 3
    expected = 0.0
    for depth, speedup in ((20, 2.5), (32, 1.0), (44, 1.0), (56, 1.0)):
        per_image = 1e-4 + 1e-4 * (depth - 20) / 36  # 0.1 ms at depth 20, 0.2 ms at 56, linear between
        expected += 2 * 5 * (per_image * images * info["epochs"] + 20.0) / 3600 / speedup
    assert out["total_gpu_hours"] == pytest.approx(expected, rel=1e-9)
    assert "N=4 (measured x2.50)" in row["concurrency"] and "N=1 (not measured)" in row["concurrency"]
    line = plan.result_line(out)
    assert line.startswith(f"RESULT total_gpu_hours={out['total_gpu_hours']:.2f} basis=measured ")


def test_unknown_table_is_a_plan_error(plan):
    with pytest.raises(plan.PlanError, match="unknown table.*valid: "):
        plan.table_sweeps(REPO / "conf", ["9.9"])
