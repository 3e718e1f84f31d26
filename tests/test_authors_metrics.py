"""Singh's Tables 3.1-3.3 as the authors' code measured them (docs/decisions/protocols.md, items 1-2).

* the "standard deviation" of a layer = the std across units of each unit's std over the batch
  (:func:`unit_std`), the Dropout row from the layer's input (mean, max, std) and output (sparsity);
* Table 3.1's train accuracy = the running train-mode accuracy of the selected / last epoch
  (:class:`EpochHistory`), on hand-built batches;
* evidence without training: a non-negative layer with mean μ and zero fraction s has a population
  std ≥ μ·√(s/(1−s)). 9 of the 14 printed rows of Tables 3.2-3.3 break that bound, so they cannot be
  the all-element std; for every printed row a batch exists whose mean, max, sparsity and per-unit
  statistic are the printed numbers, so the authors' definition is consistent with all of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bioreg.layers.dropout import Dropout
from bioreg.lit.callbacks.activation_stats import STATS, ActivationStats, authors_stats, batch_stats, unit_std
from bioreg.lit.callbacks.epoch_history import EpochHistory
from bioreg.models.points import Point, insert
from bioreg.results.tables import PAPER_DIR

# ------------------------------------------------------------------------------------- the statistic


def test_unit_std_on_a_hand_built_batch():
    """Units [0, 0, 3] and [2, 4, 0]: per-unit std (n - 1) √3 and 2; their std (n - 1) |√3 - 2| / √2."""
    x = torch.tensor([[0.0, 2.0], [0.0, 4.0], [3.0, 0.0]])
    assert float(unit_std(x)) == pytest.approx(abs(math.sqrt(3.0) - 2.0) / math.sqrt(2.0), rel=1e-6)
    # all elements (bioreg's earlier reading) is another number entirely
    assert float(batch_stats(x)[2]) == pytest.approx(np.std(x.numpy()), rel=1e-6)
    # a (N, C, H, W) map: its units are the C*H*W positions
    m = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    assert float(unit_std(m)) == pytest.approx(float(m.reshape(5, -1).std(0).std()), rel=1e-6)
    assert math.isfinite(float(unit_std(torch.randn(1, 4))))  # a batch of one: no NaN


def test_authors_stats_of_a_dropout_layer_are_of_its_input_and_its_output_sparsity():
    inp = torch.tensor([[1.0, 2.0, 0.0, 4.0], [3.0, 0.0, 5.0, 1.0]])
    out = inp * torch.tensor([[2.0, 0.0, 0.0, 2.0], [0.0, 0.0, 2.0, 2.0]])  # a dropout mask, kept x 2
    got = authors_stats(out, inp)
    sd = float(unit_std(inp))
    np.testing.assert_allclose(got.numpy(), [inp.mean(), 5.0, sd, sd * sd, 100.0 * 4 / 8], rtol=1e-6)
    plain = authors_stats(out)  # any other layer: everything of its output
    np.testing.assert_allclose(plain.numpy()[:3], [out.mean(), 10.0, float(unit_std(out))], rtol=1e-6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 3)

    @staticmethod
    def points():
        return {"fc": Point(tap="relu", producer="fc", block="fc")}

    def forward(self, x):
        return self.head(self.relu(self.fc(x)))


def test_callback_records_both_definitions_and_the_dropout_rows_input():
    torch.manual_seed(0)
    net = Net().train()
    insert(net, "fc", Dropout(0.5))
    cb = ActivationStats(points=None, momentum=0.5)
    assert cb.attach(net) == ["fc"] and cb.input_side_points(net) == {"fc"}
    seen = []
    grab = net.relu.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()), prepend=True)
    outs = []
    grab_out = net.head.register_forward_pre_hook(lambda m, i: outs.append(i[0].detach().clone()))
    expected_a, expected_b = None, None
    for k in range(3):
        cb.begin_step()
        net(torch.randn(16, 4) * (k + 1))
        cb.end_step()
        a, b = authors_stats(outs[-1], seen[-1]), batch_stats(outs[-1])
        expected_a = a if expected_a is None else 0.5 * expected_a + 0.5 * a
        expected_b = b if expected_b is None else 0.5 * expected_b + 0.5 * b
    grab.remove()
    grab_out.remove()
    for exp_ in (expected_a, expected_b):
        exp_[3] = exp_[2] ** 2
    rec = cb.to_record()
    np.testing.assert_allclose([rec["activation_stats_authors"]["fc"][s] for s in STATS], expected_a.numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose([rec["activation_stats"]["fc"][s] for s in STATS], expected_b.numpy(),
                               rtol=1e-5)
    # the input's max is below the output's (kept units are doubled), the sparsity is the output's
    assert rec["activation_stats_authors"]["fc"]["max"] < rec["activation_stats"]["fc"]["max"]
    sparsity = rec["activation_stats"]["fc"]["sparsity"]
    assert rec["activation_stats_authors"]["fc"]["sparsity"] == pytest.approx(sparsity)
    # and a resumed run continues both averages
    cb2 = ActivationStats(points=None, momentum=0.5)
    cb2.load_state_dict(cb.state_dict())
    assert cb2.summary(authors=True)["fc"] == pytest.approx(cb.summary(authors=True)["fc"])
    cb.detach()


# ----------------------------------------------------------------------------- the train accuracy


def test_running_train_accuracy_of_the_selected_and_the_last_epoch():
    h = EpochHistory()
    batches = {0: [(0.5, 10), (1.0, 6)], 1: [(0.75, 8), (0.25, 8), (1.0, 4)], 2: [(0.9, 10)]}
    for epoch, bs in batches.items():
        h.begin_epoch()
        for acc, n in bs:
            h.add_batch(torch.tensor(acc), n)
        h.close_epoch(epoch, val_acc=0.1 * (epoch + 1))
        h.close_epoch(epoch, val_acc=None)  # closing twice (validation end, then epoch end) keeps the first
    expected = [100 * (5 + 6) / 16, 100 * (6 + 2 + 4) / 20, 90.0]
    assert h.history["train_running_acc"] == pytest.approx(expected)
    assert h.history["val_acc"] == pytest.approx([10.0, 20.0, 30.0]) and h.history["epoch"] == [0, 1, 2]
    assert h.train_fields(1) == pytest.approx({"running_acc_selected": expected[1], "running_acc_last": 90.0})
    assert h.train_fields(7) == pytest.approx({"running_acc_last": 90.0})  # an epoch it never saw
    resumed = EpochHistory()
    resumed.load_state_dict(h.state_dict())
    assert resumed.to_record() == h.to_record()


# ------------------------------------------------------------------- the printed tables themselves


def _printed() -> pd.DataFrame:
    """Rows of Tables 3.2 and 3.3 with their printed mean, max, std, sparsity and the printed texts."""
    out = []
    for t in ("singh2023_table_3_2.csv", "singh2023_table_3_3.csv"):
        raw = pd.read_csv(Path(PAPER_DIR) / t, dtype=str)
        for row, g in raw.groupby("row", sort=False):
            v = dict(zip(g["column"], g["mean"], strict=True))
            out.append({"table": t, "row": row, "mean": v["Mean"], "max": v["Max"],
                        "std": v["Standard Deviation"], "sparsity": v["Mean Sparsity (%)"]})
    return pd.DataFrame(out)


def _half_unit(text: str) -> float:
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0 ** -decimals


def _bound(mu: float, s: float) -> float:
    """The least population std of a non-negative layer with mean mu and zero fraction s."""
    return mu * math.sqrt(s / (1.0 - s))


def test_nine_of_fourteen_printed_rows_cannot_be_the_all_element_std():
    rows = _printed()
    assert len(rows) == 14
    at_print, certain = [], []
    for _, r in rows.iterrows():
        mu, s, sd = float(r["mean"]), float(r["sparsity"]) / 100, float(r["std"])
        if sd < _bound(mu, s):
            at_print.append(r["row"])
        # even at the far ends of every printed number's rounding interval
        lo = _bound(mu - _half_unit(r["mean"]), (float(r["sparsity"]) - _half_unit(r["sparsity"])) / 100)
        if sd + _half_unit(r["std"]) < lo:
            certain.append(r["row"])
    assert len(at_print) == 9  # 2 rows of Table 3.2 (layer 48), all 7 of Table 3.3 (layer 51)
    assert len(certain) == 8  # SpatiotemporalMax at 48 (1.32 vs 1.33) is within the rounding
    r = rows[(rows["table"] == "singh2023_table_3_3.csv") & (rows["row"] == "TemporalMax 48 51")].iloc[0]
    assert _bound(float(r["mean"]), float(r["sparsity"]) / 100) == pytest.approx(0.294, abs=5e-4)  # vs 0.155


def _unit_sd(value: float, j: int, n: int) -> float:
    """Std over the batch (n - 1) of a unit holding ``value`` in ``j`` of ``n`` examples, 0 elsewhere."""
    return value * math.sqrt(j * (n - j) / (n * (n - 1.0)))


def _witness(mu: float, mx: float, s: float, target: float, n: int = 256, f: int = 4096) -> torch.Tensor:
    """A non-negative (n, f) batch with mean mu, max mx, zero fraction s and unit_std = target.

    Unit 0 holds mx once; h "heavy" units hold c in j examples each; the other nonzeros fill whole units
    with one value v (per-unit std 0) that makes the mean mu. (h, j) is the first pair whose largest c
    reaches the target, and c is then found by bisection on the per-unit stds (closed form)."""
    k = round((1.0 - s) * n * f)

    def parts(h: int, j: int, c: float) -> tuple[float, int, int, np.ndarray]:
        light = k - 1 - h * j
        v = (mu * n * f - mx - h * j * c) / light
        full, rest = divmod(light, n)
        stds = np.zeros(f)
        stds[0], stds[1 : h + 1] = mx / math.sqrt(n), _unit_sd(c, j, n)
        stds[h + 1 + full] = _unit_sd(v, rest, n)
        return v, full, rest, stds

    def reach(h: int, j: int) -> float:
        return min(mx, 0.9 * (mu * n * f - mx) / (h * j))

    pairs = [(h, j) for j in (1, 2, 4, 8, 16, 32, 64, 128) for h in (2 ** e for e in range(4, 12))
             if h * j < 0.9 * k and h + 2 + (k - h * j) // n < f]
    h, j = next(p for p in pairs if np.std(parts(*p, reach(*p))[3], ddof=1) >= target)
    lo, hi = 0.0, reach(h, j)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.std(parts(h, j, mid)[3], ddof=1) < target else (lo, mid)
    c = 0.5 * (lo + hi)
    v, full, rest, _ = parts(h, j, c)
    assert 0 < v <= mx and 0 < c <= mx
    x = torch.zeros(n, f, dtype=torch.float64)
    x[0, 0] = mx
    units = torch.arange(1, h + 1).repeat_interleave(j)
    x[(units + torch.arange(j).repeat(h)) % n, units] = c
    x[:, h + 1 : h + 1 + full] = v
    x[:rest, h + 1 + full] = v
    return x


def test_the_authors_definition_is_consistent_with_every_printed_row():
    """For each printed row a batch exists with its mean, max, sparsity and per-unit std (the Dropout row:
    its input has them, and dropping half of its nonzeros gives the printed output sparsity)."""
    for _, r in _printed().iterrows():
        mu, mx, sd, s = (float(r[c]) for c in ("mean", "max", "std", "sparsity"))
        s /= 100
        dropout = r["row"].startswith("Dropout")
        x = _witness(mu, mx, 1 - 2 * (1 - s) if dropout else s, sd)
        out = x.clone()
        if dropout:  # a deterministic half of the nonzeros dropped, the rest doubled (inverted dropout)
            nz = out.nonzero(as_tuple=True)
            out[nz[0][::2], nz[1][::2]] = 0.0
            out *= 2.0
        got = authors_stats(out.float(), x.float() if dropout else None).double().numpy()
        assert got[0] == pytest.approx(mu, abs=_half_unit(r["mean"])), r["row"]
        assert got[1] == pytest.approx(mx, abs=_half_unit(r["max"])), r["row"]
        assert got[2] == pytest.approx(sd, abs=_half_unit(r["std"])), r["row"]
        assert got[4] == pytest.approx(100 * s, abs=_half_unit(r["sparsity"])), r["row"]
        assert (x >= 0).all()
