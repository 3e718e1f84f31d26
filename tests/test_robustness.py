"""Tests of the corruption-robustness metrics (Strisciuglio et al. 2020 §4, App. 2;
bioreg.evaluate.robustness).

CE/rCE are checked against hand computations (exact up to float rounding, 1e-9) and the paper's own
Table 3 is recomputed from its Table 2 and the Appendix 2 AlexNet reference (rounded half up to
integers, as printed).
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bioreg.evaluate.robustness import (
    CIFAR10C_CORRUPTIONS,
    PAPER_ALEXNET_CLEAN,
    PAPER_ALEXNET_ERRORS,
    PUSHPULL2020_TABLE4_VARIANCES,
    WIDE_STDS,
    CorruptionError,
    GaussianNoiseSweep,
    Reference,
    corruption_errors,
    paper_reference,
)

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"


def _round(x: float) -> int:
    return int(Decimal(repr(x)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _metrics(errors: dict[str, dict[int, float]], e_clean: float) -> dict:
    m = {"test": {"acc": 100.0 - e_clean, "loss": 0.0, "n": 100}}
    for c, per in errors.items():
        for s, e in per.items():
            m[f"corruption/{c}/{s}"] = {"acc": 100.0 - e, "loss": 0.0, "n": 100}
    return m


# --------------------------------------------------------------------------- formulas by hand
RUN = {"fog": {1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0, 5: 50.0},
       "snow": {1: 12.0, 2: 14.0, 3: 16.0, 4: 18.0, 5: 20.0}}
REF = {"fog": {1: 20.0, 2: 30.0, 3: 40.0, 4: 50.0, 5: 60.0},
       "snow": {1: 11.0, 2: 13.0, 3: 15.0, 4: 17.0, 5: 19.0}}


def test_ce_and_rce_on_hand_made_per_severity_errors():
    ref = Reference(name="toy", clean=10.0, errors=REF)
    out = corruption_errors(RUN, 5.0, ref)
    # fog: CE = 150/200, rCE = (150 − 5·5)/(200 − 5·10);  snow: CE = 80/75, rCE = (80 − 25)/(75 − 50)
    assert out["ce"]["fog"] == pytest.approx(75.0, abs=1e-9)
    assert out["rce"]["fog"] == pytest.approx(100 * 125 / 150, abs=1e-9)
    assert out["ce"]["snow"] == pytest.approx(100 * 80 / 75, abs=1e-9)
    assert out["rce"]["snow"] == pytest.approx(100 * 55 / 25, abs=1e-9)
    assert out["mce"] == pytest.approx((75.0 + 100 * 80 / 75) / 2, abs=1e-9)
    assert out["rmce"] == pytest.approx((100 * 125 / 150 + 100 * 55 / 25) / 2, abs=1e-9)
    assert out["e_corr"] == pytest.approx((150 + 80) / 10, abs=1e-9)
    assert out["e_clean"] == 5.0
    assert out["corruptions_used"] == ["fog", "snow"] and out["corruptions_missing"] == []
    assert out["reference"]["per_severity"] is True


def test_mean_only_reference_equals_the_sum_over_five_severities():
    means = {c: sum(v.values()) / 5 for c, v in REF.items()}  # Σ_s E_ref = 5 · mean
    a = corruption_errors(RUN, 5.0, Reference(name="per", clean=10.0, errors=REF))
    b = corruption_errors(RUN, 5.0, Reference(name="mean", clean=10.0, errors=means))
    assert b["reference"]["per_severity"] is False
    for k in ("mce", "rmce"):
        assert a[k] == pytest.approx(b[k], abs=1e-9)


def test_unmatched_severities_use_the_common_ones_and_are_reported():
    run = {"fog": {1: 10.0, 2: 20.0, 3: 30.0}}
    out = corruption_errors(run, 5.0, Reference(name="toy", clean=10.0, errors=REF))
    assert out["ce"]["fog"] == pytest.approx(100 * 60 / 90, abs=1e-9)
    assert out["severities_unmatched"] == {"fog": [4, 5]}
    assert out["corruptions_missing"] == ["snow"]


def test_paper_reference_matches_the_transcribed_csv():
    csv = pd.read_csv(PAPER / "pushpull2020_alexnet_reference.csv").set_index(
        "corruption")["alexnet_cifar_error"]
    assert csv.pop("clean") == PAPER_ALEXNET_CLEAN
    assert dict(csv) == PAPER_ALEXNET_ERRORS
    assert set(PAPER_ALEXNET_ERRORS) == set(CIFAR10C_CORRUPTIONS)


# --------------------------------------------------------------------------- the paper's Table 3 from Table 2
T2 = pd.read_csv(PAPER / "pushpull2020_table2_corruption_error.csv").set_index("corruption")
T3 = pd.read_csv(PAPER / "pushpull2020_table3_summary.csv").set_index("model")


def _from_table2(model: str) -> dict:
    errors = {c: float(T2.loc[c, model]) for c in T2.index if c != "average"}
    return corruption_errors(errors, float(T3.loc[model, "e_clean"]), paper_reference())


@pytest.mark.parametrize("model", list(T2.columns))
def test_table3_mce_and_rce_recomputed_from_table2(model):
    out = _from_table2(model)
    assert len(out["corruptions_used"]) == 19 and out["corruptions_missing"] == []
    assert _round(out["mce"]) == int(T3.loc[model, "mce"])
    assert _round(out["rmce"]) == int(T3.loc[model, "rce"])


def test_table3_examples():
    for model, mce, rce in [("resnet20", 104, 169), ("resnet20_pp", 101, 158), ("resnet32_pp", 92, 145)]:
        out = _from_table2(model)
        assert (_round(out["mce"]), _round(out["rmce"])) == (mce, rce)
    out = _from_table2("resnet20")
    assert out["mce"] == pytest.approx(103.7, abs=0.05) and out["rmce"] == pytest.approx(168.7, abs=0.05)


@pytest.mark.parametrize("model", list(T2.columns))
def test_e_corr_is_the_mean_of_table2(model):
    out = _from_table2(model)
    # Table 2's printed average (26.33) disagrees with its own column; Table 3: 26.23
    if model == "resnet56_pp":
        assert out["e_corr"] == pytest.approx(float(T3.loc[model, "e_corr"]), abs=0.005)
    else:
        assert out["e_corr"] == pytest.approx(float(T2.loc["average", model]), abs=0.005)


# --------------------------------------------------------------------------- the evaluator
def test_evaluator_reports_missing_corruptions():
    ctx = SimpleNamespace(metrics=_metrics(RUN, 5.0))
    out = CorruptionError()(ctx)
    assert out["corruptions_used"] == ["fog", "snow"]
    assert set(out["corruptions_missing"]) == set(CIFAR10C_CORRUPTIONS) - {"fog", "snow"}
    assert out["ce"]["fog"] == pytest.approx(100 * 30 / PAPER_ALEXNET_ERRORS["fog"], abs=1e-9)
    assert out["rce"]["snow"] == pytest.approx(100 * (16 - 5) / (PAPER_ALEXNET_ERRORS["snow"] - 13.87),
                                               abs=1e-9)
    for key in ("e_clean", "e_corr", "ce", "mce", "rce", "rmce", "reference", "corruptions_used"):
        assert key in out
    with pytest.raises(ValueError, match="require_all"):
        CorruptionError(require_all=True)(ctx)
    only = CorruptionError(corruptions=["fog", "zoom_blur"])(ctx)
    assert only["corruptions_used"] == ["fog"] and only["corruptions_missing"] == ["zoom_blur"]


def test_evaluator_without_corruption_metrics_says_so():
    out = CorruptionError()(SimpleNamespace(metrics={"test": {"acc": 90.0}}))
    assert "corruption" in out["error"]


def test_user_reference_record_gives_per_severity_errors(tmp_path):
    rec = tmp_path / "seed0.json"
    rec.write_text(json.dumps({"name": "alexnet_cifar_reference", "seed": 0, "metrics": _metrics(REF, 10.0)}))
    out = CorruptionError(reference=str(rec))(SimpleNamespace(metrics=_metrics(RUN, 5.0)))
    assert out["reference"]["per_severity"] is True and out["reference"]["e_clean"] == pytest.approx(10.0)
    assert out["ce"]["fog"] == pytest.approx(75.0, abs=1e-9)
    assert out["rmce"] == pytest.approx((100 * 125 / 150 + 100 * 55 / 25) / 2, abs=1e-9)


def test_bad_reference_and_corruption_names(tmp_path):
    with pytest.raises(ValueError, match="paper_alexnet"):
        CorruptionError(reference=str(tmp_path / "nope.json"))(SimpleNamespace(metrics=_metrics(RUN, 5.0)))
    with pytest.raises(ValueError, match="valid names: gaussian_noise"):
        CorruptionError(corruptions=["fogg"])


# --------------------------------------------------------------------------- Gaussian noise sweep
class _Recorder(nn.Module):
    """Predicts class 1 when the mean pixel exceeds 0.5; remembers its inputs."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1)


def _ctx(batch_size: int, model: nn.Module):
    x = torch.cat([torch.full((6, 3, 4, 4), 0.3), torch.full((6, 3, 4, 4), 0.7)])
    y = torch.cat([torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)])
    ds = TensorDataset(x, y)
    dm = SimpleNamespace(test_set=lambda: ds, eval_dataloader=lambda d: DataLoader(d, batch_size=batch_size))
    return SimpleNamespace(datamodule=dm, model=model, device=torch.device("cpu")), x


def test_noise_sweep_is_deterministic_and_adds_the_stated_noise():
    sweep = GaussianNoiseSweep(stds=[0.0, 0.1, 5.0], seed=3)
    model = _Recorder()
    ctx, x = _ctx(5, model)
    out = sweep(ctx)
    assert out["n"] == 12 and out["std"] == [0.0, 0.1, 5.0] and out["variance"] == [0.0, 0.010000000000000002,
                                                                                    25.0]
    assert out["acc"][0] == 100.0 and out["acc"][2] < 100.0
    # batch 1 of 5 images, std 0.1: x + 0.1 · z_i with z_i the per-image field
    z = torch.stack([sweep.unit_noise(i, (3, 4, 4)) for i in range(5)])
    torch.testing.assert_close(model.seen[1], x[:5] + 0.1 * z)
    # same numbers with another batch size and on a second call
    ctx7, _ = _ctx(7, _Recorder())
    assert sweep(ctx7)["acc"] == out["acc"]
    assert GaussianNoiseSweep(stds=[0.0, 0.1, 5.0], seed=3)(ctx)["acc"] == out["acc"]


def test_noise_sweep_clip_and_subset():
    model = _Recorder()
    ctx, _ = _ctx(4, model)
    out = GaussianNoiseSweep(stds=[3.0], clip=True, max_samples=8)(ctx)
    assert out["n"] == 8
    assert all(t.min() >= 0 and t.max() <= 1 for t in model.seen)


@pytest.mark.parametrize("stds", [[], [-0.1], [math.nan]])
def test_noise_sweep_bad_stds(stds):
    with pytest.raises(ValueError, match="stds must be"):
        GaussianNoiseSweep(stds=stds)


def test_noise_sweep_default_is_the_push_pull_table4_variances():
    """Strisciuglio et al. (2020), Table 4 prints variances sigma^2 in {0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2}."""
    sweep = GaussianNoiseSweep()
    assert sweep.variances == [0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2] == list(PUSHPULL2020_TABLE4_VARIANCES)
    assert sweep.stds == pytest.approx([0.0, 0.01, math.sqrt(5e-4), math.sqrt(1e-3), math.sqrt(5e-3), 0.1])
    model = _Recorder()
    ctx, x = _ctx(4, model)
    out = GaussianNoiseSweep(variances=[0.0, 0.01], seed=3)(ctx)
    assert out["variance"] == [0.0, 0.01] and out["std"] == [0.0, 0.1]
    # variance 0.01 is the same noise as std 0.1 (same unit fields)
    z = torch.stack([GaussianNoiseSweep(seed=3).unit_noise(i, (3, 4, 4)) for i in range(4)])
    torch.testing.assert_close(model.seen[1], x[:4] + 0.1 * z)
    assert out["acc"] == GaussianNoiseSweep(stds=[0.0, 0.1], seed=3)(_ctx(4, _Recorder())[0])["acc"]
    assert list(WIDE_STDS) == GaussianNoiseSweep(stds=WIDE_STDS).stds  # the wider sweep stays available


def test_noise_sweep_levels_as_stds_or_variances_not_both():
    with pytest.raises(ValueError, match="either as variances .* or as stds, not both"):
        GaussianNoiseSweep(stds=[0.1], variances=[0.01])
    with pytest.raises(ValueError, match="variances must be"):
        GaussianNoiseSweep(variances=[-1e-4])
