"""Adversarial attacks (Singh 2023 §1.3, Tables 3.4-3.5) and the gradient-masking red flags (§1.3.6)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from torch import nn

from bioreg.evaluate.attacks import ATTACKS, AdversarialEvaluator, _seeded, batch_seed, fgsm, pgd
from bioreg.evaluate.core import EvalContext
from bioreg.evaluate.errors import EvaluatorConfigError
from bioreg.evaluate.gradient_masking import FLAGS, evaluate_red_flags, format_red_flags
from bioreg.evaluate.stats import acc_entry, wilson_ci

SHAPE = (3, 8, 8)
D = 3 * 8 * 8
C = 10


# ------------------------------------------------------------------------------------------ models
class _GridGrad(torch.autograd.Function):
    """Identity whose gradient passes only where the input lies on the 8-bit grid (shattered gradients)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward((x * 255 - torch.round(x * 255)).abs() < 1e-3)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (on,) = ctx.saved_tensors
        return g * on


class Linear(nn.Module):
    """A linear softmax classifier behind an optional gradient-masking front end.

    ``round``: x ↦ round(255·x)/255, whose gradient is zero everywhere;
    ``grid``: identity, but the gradient is zero off the 8-bit grid (so only FGSM from a clean,
    quantised image sees it; PGD's random start is off the grid).
    """

    def __init__(self, mask: str = "none", dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(D, C).to(dtype)
        with torch.no_grad():
            self.lin.weight.normal_(0, 1)
            self.lin.bias.zero_()
        self.mask = mask

    def forward(self, x):
        if self.mask == "round":
            x = torch.round(x * 255) / 255
        elif self.mask == "grid":
            x = _GridGrad.apply(x)
        return self.lin(x.flatten(1))


def _data(n: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *SHAPE), generator=g).float() / 255
    with torch.no_grad():
        y = Linear()(x).argmax(1)  # labels = the model's clean prediction: clean accuracy 100 %
    return x, y


class _DM:
    num_classes = C

    def __init__(self, x, y):
        self.ds = torch.utils.data.TensorDataset(x, y)

    def test_set(self):
        return self.ds


def _ctx(model, x, y):
    return EvalContext(model=model.eval(), datamodule=_DM(x, y), device=torch.device("cpu"), progress=False)


FAST = {"batch_size": 24, "square_queries": 100, "noise_draws": 5, "unbounded_n": 24, "unbounded_steps": 10}


# ---------------------------------------------------------------------------- confidence intervals
@pytest.mark.parametrize("k, n", [(0, 100), (3, 100), (50, 100), (100, 100), (1, 7), (9999, 10000)])
def test_wilson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_ci(k, n)
    assert lo == pytest.approx(100 * ci.low, abs=1e-9)
    assert hi == pytest.approx(100 * ci.high, abs=1e-9)
    e = acc_entry(k, n)
    assert e["acc"] == pytest.approx(100 * k / n) and e["ci95"][0] <= e["acc"] <= e["ci95"][1]


# --------------------------------------------------------------------------------------- FGSM
def test_fgsm_linear_closed_form():
    """Linear softmax: ∇ₓ CE(Wx + b, y) = Wᵀ(p − e_y), so x_adv = clip(x + ε·sign(Wᵀ(p − e_y)), 0, 1);
    targeted: clip(x − ε·sign(Wᵀ(p − e_t)), 0, 1)."""
    model = Linear(dtype=torch.float64).eval()
    x, y = _data(16)
    x = x.double()
    W, b = model.lin.weight.detach(), model.lin.bias.detach()
    p = F.softmax(x.flatten(1) @ W.T + b, 1)
    eps = 8 / 255
    for targets in (None, (y + 1) % C):
        lab = y if targets is None else targets
        g = (p - F.one_hot(lab, C).double()) @ W
        sgn = 1.0 if targets is None else -1.0
        expect = (x.flatten(1) + sgn * eps * g.sign()).clamp(0, 1).view_as(x)
        got = fgsm(model, x, y, eps, targets=targets)
        torch.testing.assert_close(got, expect, rtol=0, atol=1e-12)
    assert (got != x).any() and ((got == 0) | (got == 1)).any()  # clipping was exercised


# ---------------------------------------------------------------------------------------- PGD
@pytest.mark.parametrize("norm, eps, step", [("linf", 8 / 255, 3 / 255), ("l2", 0.5, 0.3)])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_ball_and_box(norm, eps, step, targeted):
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, C)).eval()
    x, y = _data(12)
    x[0] = 0.0
    x[1] = 1.0  # images on the box boundary
    t = (y + 1) % C if targeted else None
    with _seeded(0, torch.device("cpu")):
        xa = pgd(cnn, x, y, eps=eps, step=step, steps=5, norm=norm, targets=t)
    d = (xa - x).flatten(1)
    assert xa.min() >= 0 and xa.max() <= 1
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert (size > 0.5 * eps).any()  # it did move


def test_targeted_success_is_measured_against_the_target():
    """A model that always predicts class 4 on images labelled 3: PGD-T's target (y + 1) mod 10 = 4,
    so targeted success is 100 % while accuracy on the true labels is 0 %."""

    class Always4(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.zeros(x.shape[0], C) + self.w * x.flatten(1).sum(1, keepdim=True)
            out[:, 4] += 5.0
            return out

    x, _ = _data(20)
    y = torch.full((20,), 3)
    r = AdversarialEvaluator(attacks=["pgd_t", "pgd_t_l2"], red_flags=False, batch_size=8)(
        _ctx(Always4(), x, y))
    for sec in (r["linf"]["pgd_t"], r["l2"]["pgd_t"]):
        assert sec["acc"] == 0.0 and sec["target_success"] == 100.0
        assert sec["target_success_ci95"] == pytest.approx(list(wilson_ci(20, 20)))
    assert r["clean"]["acc"] == 0.0 and r["n"] == 20


# -------------------------------------------------------------------------------- evaluator
def test_evaluator_section_determinism_and_rng():
    x, y = _data(30)
    kw = dict(FAST, n=20, attacks=["fgsm", "pgd_ce", "square", "pgd_ce_l2"], seed=3, red_flags=False)
    ctx = _ctx(Linear(), x, y)
    state = torch.get_rng_state()
    a = AdversarialEvaluator(**kw)(ctx)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    b = AdversarialEvaluator(**kw)(_ctx(Linear(), x, y))
    strip = ("time_s",)

    def clean(d):
        return {k: clean(v) if isinstance(v, dict) else v for k, v in d.items() if k not in strip}

    assert clean(a) == clean(b)
    assert set(a["linf"]) == {"fgsm", "pgd_ce", "square"} and set(a["l2"]) == {"pgd_ce"}
    for e in (*a["linf"].values(), *a["l2"].values()):
        assert {"acc", "ci95", "eps", "n"} <= set(e) and e["n"] == 20
        assert e["ci95"] == pytest.approx(list(wilson_ci(e["k"], 20)))
    assert a["linf"]["pgd_ce"]["steps"] == 10 and a["linf"]["pgd_ce"]["step"] == pytest.approx(3 / 255)
    assert "red_flags" not in a and a["n"] == 20
    json.dumps(a)  # JSON-serialisable
    assert batch_seed(3, "pgd_ce", 0) != batch_seed(3, "pgd_ce", 1) != batch_seed(3, "pgd_t", 1)


def _run_flags(mask: str):
    x, y = _data(48)
    return AdversarialEvaluator(**FAST, attacks=["fgsm", "pgd_ce", "square"], seed=0)(
        _ctx(Linear(mask), x, y))


def test_red_flags_silent_on_plain_model():
    r = _run_flags("none")
    assert r["linf"]["pgd_ce"]["acc"] <= r["linf"]["fgsm"]["acc"]
    assert {k: r["red_flags"][k]["flag"] for k in FLAGS} == dict.fromkeys(FLAGS, False)
    sweep = r["eps_sweep"]
    assert sweep["eps"] == pytest.approx([2 / 255, 4 / 255, 8 / 255, 16 / 255])
    assert sweep["acc"][2] == r["linf"]["pgd_ce"]["acc"]  # the 8/255 point is PGD-CE itself
    assert sweep["acc"][0] > sweep["acc"][-1] and r["unbounded"]["acc"] == 0.0
    assert r["red_flags"]["any"] is False


def test_red_flags_fire_on_masked_models():
    zero = _run_flags("round")  # zero gradient everywhere: PGD and FGSM do nothing, Square works
    f = {k: zero["red_flags"][k]["flag"] for k in FLAGS}
    assert f == {"iterative_weaker": False, "blackbox_stronger": True, "unbounded_short": True,
                 "eps_not_increasing": True, "random_search_better": True}
    grid = _run_flags("grid")  # gradient only on the 8-bit grid: FGSM works, PGD (random start) does not
    f = {k: grid["red_flags"][k]["flag"] for k in FLAGS}
    assert f["iterative_weaker"] and f["blackbox_stronger"] and f["random_search_better"]
    assert "FGSM" in grid["red_flags"]["iterative_weaker"]["evidence"]
    # recomputing from the stored section gives the stored verdicts (what scripts/red_flags.py does)
    again = evaluate_red_flags(grid)
    assert {k: again[k]["flag"] for k in FLAGS} == f
    text = format_red_flags([{"name": "grid", "seed": 0, "extra": {"attacks": grid}},
                             {"name": "plain", "seed": 0, "extra": {}}])
    assert "RAISED" in text and "| grid s0 |" in text and "plain" not in text


def test_red_flag_rules_on_constructed_sections():
    def e(k, n=100):
        return acc_entry(k, n)

    sec = {"linf": {"fgsm": e(20), "pgd_ce": e(80), "square": e(0)},
           "unbounded": {**e(0, 50), "eps": 1.0, "steps": 20},
           "eps_sweep": {"eps": [2 / 255, 16 / 255], "acc": [40.0, 0.0],
                         "ci95": [e(40)["ci95"], e(0)["ci95"]], "n": 100},
           "random_search": {"n": 100, "random_search_only": 1}}
    f = evaluate_red_flags(sec)
    assert f["iterative_weaker"]["flag"] and f["blackbox_stronger"]["flag"]
    assert not f["unbounded_short"]["flag"] and not f["eps_not_increasing"]["flag"]
    assert not f["random_search_better"]["flag"]  # 1/100: lower bound 0.18 % < 1 %
    assert evaluate_red_flags({"linf": {}})["iterative_weaker"]["flag"] is None


# -------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, word", [
    ({"eps_linf": -0.1}, "eps_linf"), ({"eps_l2": -1}, "eps_l2"),
    ({"attacks": ["pgd", "fgsm"]}, "valid choices"),
    ({"n": 0}, "n must be"), ({"steps": 0}, "steps"), ({"square_queries": 0}, "square_queries"),
])
def test_bad_input(kw, word):
    with pytest.raises(EvaluatorConfigError, match=word) as ei:
        AdversarialEvaluator(**kw)
    if "attacks" in kw:
        assert all(a in str(ei.value) for a in ATTACKS)


# ------------------------------------------------------------------------- scripts (end to end)
def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_evaluate_checkpoint_and_red_flags_scripts(tmp_path, capsys):
    """A record + best.ckpt of the demo experiment (untrained weights): the script adds
    extra.attacks and extra.fisher_rao, keeps every other field, and red_flags.py prints them."""
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bioreg.app.run import build

    conf = os.path.join(os.path.dirname(__file__), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=demo", f"results_dir={tmp_path / 'runs'}"])
    _, lit = build(cfg)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    torch.save({"state_dict": lit.state_dict(), "epoch": 3}, ckpt_dir / "best.ckpt")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    rec = {"name": "demo", "seed": 0, "config_key": "k", "status": "completed", "config": resolved,
           "ckpt_dir": str(ckpt_dir), "summary": {"test_acc": 1.0}, "extra": {"robustness": {"x": 1}}}
    path = tmp_path / "runs" / "demo" / "k" / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    small = ["eval.evaluators.attacks.n=12", "eval.evaluators.attacks.batch_size=12",
             "eval.evaluators.attacks.square_queries=5", "eval.evaluators.attacks.noise_draws=2",
             "eval.evaluators.attacks.unbounded_n=4", "eval.evaluators.attacks.unbounded_steps=2",
             "eval.evaluators.fisher_rao.n=12", "eval.progress=false"]
    assert _script("evaluate_checkpoint").main([str(path.parent), "--device", "cpu", *small]) == 0
    new = json.loads(path.read_text())
    assert new["extra"]["robustness"] == {"x": 1} and new["summary"] == rec["summary"]
    assert new["config"] == resolved and new["config_key"] == "k"
    att, fr = new["extra"]["attacks"], new["extra"]["fisher_rao"]
    assert att["n"] == 12 and set(att["linf"]) == {"fgsm", "pgd_ce", "pgd_t", "square"} and set(
        att["l2"]) == {"pgd_ce", "pgd_t"}
    assert att["provenance"]["epoch"] == 3 and att["seed"] == 0
    assert fr["n"] == 12 and fr["value"] >= 0 and fr["labels"] == "data"
    capsys.readouterr()
    assert _script("red_flags").main(["--results-dir", str(tmp_path / "runs")]) == 0
    assert "| demo s0 | 12 |" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_evaluate_checkpoint_refuses_a_bad_checkpoint_in_one_line(tmp_path, capsys, content):
    """A text file, or a payload-free checkpoint of another model, given as --ckpt: exit 2 and one
    ``error:`` line naming the file, no traceback, the record untouched."""
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = os.path.join(os.path.dirname(__file__), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=demo", f"results_dir={tmp_path / 'runs'}"])
    rec = {"name": "demo", "seed": 0, "config_key": "k", "status": "completed",
           "config": OmegaConf.to_container(cfg, resolve=True), "ckpt_dir": str(tmp_path)}
    path = tmp_path / "runs" / "demo" / "k" / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    ckpt = tmp_path / "bad.ckpt"
    if content is None:  # a readable checkpoint of another network
        torch.save({"state_dict": {"model.net.other.weight": torch.zeros(3)}}, ckpt)
    else:
        ckpt.write_bytes(content)
    capsys.readouterr()
    code = _script("evaluate_checkpoint").main([str(path), "--ckpt", str(ckpt), "--device", "cpu",
                                                "eval.progress=false", "--only", "fisher_rao"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(err) == 1 and "bad.ckpt" in err[0], err
    assert json.loads(path.read_text()) == rec
