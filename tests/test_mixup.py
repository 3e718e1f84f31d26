"""Input mixup, manifold mixup (Dutta 2019 §3.1, eq 3.1) and the Ch. 3 stopping rule (§3.2.3).

* the loss is λ·CE(y) + (1 − λ)·CE(y[perm]) — on hand-built logits, and through a training step on
  a hand-mixed batch; accuracy counts the dominant label;
* λ = 1 reproduces plain training exactly (same weights after an optimizer step);
* manifold mixup mixes at exactly one chosen point per batch, every eligible point gets chosen,
  and nothing is mixed in eval mode or outside a training step;
* bad alpha / unknown eligible point / two mixers → one-line errors naming the valid choices;
* StopAtAccuracy stops at the first epoch whose validation accuracy reaches the threshold and
  records it; end to end, digits runs with either mixup learn (slow).
"""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict

from bioreg.config import ConfigError
from bioreg.layers.base import BatchMixer, MixPlan, RegularizerConfigError
from bioreg.layers.mixup import ManifoldMixup, MixTap, Mixup
from bioreg.lit.callbacks.stopping import StopAtAccuracy
from bioreg.lit.module import LitClassifier, mixed_loss
from bioreg.lit.optim import build_optimizer
from bioreg.models import VGG11, AllConvNet, resnet20
from bioreg.models.points import distinct_points

OPTIM = {"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9,
                       "weight_decay": 1e-4}}
MIXUP = {"_target_": "bioreg.layers.mixup.Mixup", "at": "input"}
MANIFOLD = {"_target_": "bioreg.layers.mixup.ManifoldMixup", "at": "all"}


def small_net() -> AllConvNet:
    torch.manual_seed(0)
    return AllConvNet(num_classes=10, in_channels=3, layer1_width=4, width=6, width2=8, final_relu=False)


def lit_with(reg, net=None) -> LitClassifier:
    lit = LitClassifier(net or small_net(), [0.5] * 3, [0.25] * 3, OPTIM, reg=reg, input_shape=(3, 16, 16))
    lit.log = lambda *a, **k: None  # no Trainer attached
    return lit


def batch(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- the loss ------------------------------------------------------------------------------------------------


def test_mixed_loss_on_hand_built_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1, 2])
    plan = MixPlan(lam=0.3, perm=torch.tensor([2, 0, 1]), point="input")

    def ce(row, label):  # -log softmax, by hand
        return -(row[label] - math.log(sum(math.exp(v) for v in row)))

    rows = logits.tolist()
    partner = [2, 0, 1]
    expected = sum(0.3 * ce(r, i) + 0.7 * ce(r, partner[i]) for i, r in enumerate(rows)) / 3
    loss, acc = mixed_loss(logits, y, plan)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # accuracy against the dominant label: lam = 0.3 < 0.5, so the partner's label y[perm] = [2, 0, 1];
    # predictions are [0, 1, 2]: none matches; with lam = 0.7 all three match
    assert float(acc) == 0.0
    assert float(mixed_loss(logits, y, MixPlan(0.7, plan.perm, "input"))[1]) == 1.0
    assert float(mixed_loss(logits, y, MixPlan(0.5, plan.perm, "input"))[1]) == 1.0  # a tie counts y
    plain, plain_acc = mixed_loss(logits, y, None)
    assert torch.equal(plain, F.cross_entropy(logits, y)) and float(plain_acc) == 1.0


@pytest.mark.parametrize("reg", [MIXUP, MANIFOLD], ids=["mixup", "manifold_mixup"])
def test_training_step_loss_equals_the_mixture_on_a_hand_mixed_batch(reg):
    lit = lit_with({"m": {**reg, "alpha": 0.7}}).train()
    x, y = batch()
    torch.manual_seed(5)
    plan = lit._mixer.plan_mix(len(y))  # the plan the step below will draw from the same RNG state
    torch.manual_seed(5)
    loss = lit.training_step((x, y), 0)
    assert 0.0 < plan.lam < 1.0
    # by hand: run the network up to the chosen point, mix there, continue (a forward hook does the mixing)
    point = plan.point
    tap_module = lit.model.net.get_submodule(lit.model.net.points()[point].tap)
    h = tap_module.register_forward_hook(lambda m, i, o: plan.lam * o + (1 - plan.lam) * o[plan.perm])
    try:
        logits = lit(x)  # no plan in the state: the taps are identities
    finally:
        h.remove()
    expected = plan.lam * F.cross_entropy(logits, y) + (1 - plan.lam) * F.cross_entropy(logits, y[plan.perm])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-6)


def test_input_mixup_mixes_the_images():
    lit = lit_with({"m": {**MIXUP, "lam": 0.25}}).train()
    x, y = batch()
    seen = {}
    # registered after the tap's hook: sees the input point's output after mixing
    lit.model.net.input.register_forward_hook(lambda m, i, o: seen.setdefault("a", o.detach().clone()))
    torch.manual_seed(0)
    plan = lit._mixer.plan_mix(len(y))
    torch.manual_seed(0)
    lit.training_step((x, y), 0)
    assert isinstance(lit.model.net.regularizers["input__0"], MixTap) and plan.lam == 0.25
    # eq 3.1 on the raw images, then the model's normalisation (mixing is affine, so the order does not
    # matter)
    expected = (0.25 * x + 0.75 * x[plan.perm] - 0.5) / 0.25
    assert torch.allclose(seen["a"], expected, atol=1e-5)
    assert not torch.allclose(seen["a"], (x - 0.5) / 0.25, atol=1e-2)


@pytest.mark.parametrize("reg", [MIXUP, MANIFOLD], ids=["mixup", "manifold_mixup"])
def test_lambda_one_reproduces_plain_training_exactly(reg):
    net = small_net()
    plain = lit_with(None, copy.deepcopy(net)).train()
    mixed = lit_with({"m": {**reg, "lam": 1.0}}, copy.deepcopy(net)).train()
    opts = [build_optimizer(m.model, OPTIM) for m in (plain, mixed)]
    for step in range(3):
        x, y = batch(seed=10 + step)
        for lit, opt in zip((plain, mixed), opts, strict=True):
            opt.zero_grad()
            lit.training_step((x, y), step).backward()
            opt.step()
    a, b = plain.model.net.state_dict(), mixed.model.net.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical, BN statistics too


# -- where manifold mixup mixes ------------------------------------------------------------------------------


def _tap_log(lit):
    """Per forward pass: the points whose tap changed its input."""
    log: list[str] = []
    for tap in lit.model.net.regularizers.values():
        tap.register_forward_hook(lambda m, i, o: log.append(m.point) if not torch.equal(i[0], o) else None)
    return log


def test_manifold_mixup_mixes_at_exactly_one_chosen_point_per_batch():
    lit = lit_with({"m": MANIFOLD}).train()
    eligible = lit._mixer.points
    assert eligible == distinct_points(lit.model.net)[:-1] and eligible[0] == "input"
    log = _tap_log(lit)
    chosen = []
    orig = lit._mixer.plan_mix

    def spy(*a, **k):
        chosen.append(orig(*a, **k))
        return chosen[-1]

    lit._mixer.plan_mix = spy
    torch.manual_seed(0)
    for step in range(60):
        log.clear()
        lit.training_step(batch(seed=step), step)
        assert log == [chosen[-1].point] and chosen[-1].applied == 1
    assert {p.point for p in chosen} == set(eligible)  # every eligible point is chosen (uniform over 9)
    assert lit.state.mix is None  # the plan lives only for its forward pass


def test_never_mixes_in_eval_mode_or_outside_a_training_step():
    lit = lit_with({"m": MANIFOLD})
    x, y = batch()
    log = _tap_log(lit)
    lit.eval()
    ref = lit(x)
    for point in lit._mixer.points:  # even with a plan in the state, eval mode is the identity
        lit.state.mix = plan = MixPlan(0.3, torch.randperm(len(y)), point)
        assert torch.equal(lit(x), ref) and plan.applied == 0
    lit.state.mix = None
    lit.validation_step((x, y), 0)
    lit.train()
    lit(x)  # a training-mode forward outside training_step (no plan): identity
    assert log == []


def test_a_point_the_forward_pass_skips_is_reported():
    lit = lit_with({"m": MANIFOLD}).train()
    lit._mixer.points = ["nowhere"]  # a plan naming a point without a tap
    with pytest.raises(RuntimeError, match=r"applied 0 times.*expected once"):
        lit.training_step(batch(), 0)


@pytest.mark.parametrize("make", [VGG11, resnet20, small_net], ids=["vgg11", "resnet20", "allconvnet"])
def test_default_eligible_points_on_any_model(make):
    net = make()
    lit = LitClassifier(net, [0.5] * 3, [0.25] * 3, OPTIM, reg={"m": MANIFOLD}, input_shape=(3, 32, 32))
    pts = distinct_points(net)
    assert isinstance(lit._mixer, BatchMixer) and lit._mixer.points == pts[:-1]
    assert [t.point for t in net.regularizers.values()] == pts[:-1]
    # the thesis's numbering: input, layer1 ... layer12 (layer13, the last pool, feeds the head)
    if make is VGG11:
        assert pts[:-1] == ["input"] + [f"layer{i}" for i in range(1, 13)]


def test_eligible_points_list_is_kept_in_forward_order():
    lit = lit_with({"m": {**MANIFOLD, "at": ["layer3", "input", "layer3"]}})
    assert lit._mixer.points == ["input", "layer3"]
    assert sorted(t.point for t in lit.model.net.regularizers.values()) == ["input", "layer3"]


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), "big"])
@pytest.mark.parametrize("cls", [Mixup, ManifoldMixup])
def test_bad_alpha_is_one_line_naming_the_range(cls, alpha):
    with pytest.raises(RegularizerConfigError, match=r"alpha must be a finite number > 0") as e:
        cls(alpha=alpha)
    assert "\n" not in str(e.value)


def test_bad_lam():
    with pytest.raises(RegularizerConfigError, match=r"lam must be null .* or in \[0, 1\], got 1.5"):
        Mixup(lam=1.5)


def test_unknown_eligible_point_names_the_valid_ones():
    with pytest.raises(RegularizerConfigError) as e:
        lit_with({"m": {**MANIFOLD, "at": ["input", "layer42"]}})
    msg = str(e.value)
    assert "\n" not in msg and "'layer42'" in msg and "valid: 'all' or points among input, layer1," in msg
    with pytest.raises(RegularizerConfigError,
                       match=r"mixup mixes at one point .* Valid points: input, layer1"):
        lit_with({"m": {**MIXUP, "at": "all"}})
    with pytest.raises(RegularizerConfigError, match=r"unknown eligible point\(s\) 'layer42'.*valid"):
        lit_with({"m": {**MIXUP, "at": "layer42"}})


def test_two_mixers_are_refused():
    with pytest.raises(RegularizerConfigError, match=r"at most one batch-mixing regularizer.*a, b"):
        lit_with({"a": MIXUP, "b": MANIFOLD})


def test_config_errors_through_the_experiments():
    from bioreg.app.run import build
    from helpers.configs import compose

    with pytest.raises(RegularizerConfigError, match=r"alpha must be a finite number > 0.*got -2"):
        build(compose(["+experiment=vgg11_ch3_mixup", "data=digits", "reg.mixup.alpha=-2"]))
    with pytest.raises(RegularizerConfigError, match=r"'layer14'.*points among input, layer1, .*layer13"):
        build(compose(["+experiment=vgg11_ch3_manifold_mixup", "data=digits",
                       "reg.manifold_mixup.at=[input,layer14]"]))


def test_ch3_experiments_follow_the_thesis():
    from helpers.configs import compose

    for variant, target in (("vanilla", None), ("mixup", "Mixup"), ("manifold_mixup", "ManifoldMixup")):
        cfg = compose([f"+experiment=vgg11_ch3_{variant}"])
        assert cfg.name == f"vgg11_ch3_{variant}" and cfg.model._target_ == "bioreg.models.VGG11"
        opt = cfg.optim.optimizer
        assert (opt._target_, opt.momentum, opt.weight_decay) == ("torch.optim.SGD", 0.9, 1e-4)
        assert cfg.data.augment == "none"
        stop = cfg.callbacks.stop_at_accuracy
        assert stop._target_ == "bioreg.lit.callbacks.stopping.StopAtAccuracy" and stop.threshold == 80.0
        targets = [e._target_.rsplit(".", 1)[1] for e in cfg.reg.values()]
        assert targets == ([] if target is None else [target])


# -- the stopping rule ---------------------------------------------------------------------------------------


def _fake_trainer(epoch: int, acc: float, **kw):
    return SimpleNamespace(current_epoch=epoch, sanity_checking=False, should_stop=False,
                           callback_metrics={"val/acc": torch.tensor(acc)}, **kw)


def test_stop_at_accuracy_stops_at_the_first_epoch_reaching_the_threshold():
    cb = StopAtAccuracy(threshold=80.0)
    accs = [0.41, 0.7999, 0.80, 0.95]
    stopped = []
    for epoch, acc in enumerate(accs):
        tr = _fake_trainer(epoch, acc)
        cb.on_validation_end(tr, None)
        cb.on_train_epoch_end(tr, None)
        stopped.append(tr.should_stop)
        if tr.should_stop:
            break
    assert stopped == [False, False, True]
    rec = cb.to_record()["stop_at_accuracy"]
    assert rec == {"threshold": 80.0, "data": None, "monitor": "val/acc", "reached": True, "epoch": 2,
                   "value": pytest.approx(80.0), "epochs_trained": 3}
    # the sanity check does not count; a resumed run that had already stopped stops at once
    sanity = _fake_trainer(0, 0.99)
    sanity.sanity_checking = True
    fresh = StopAtAccuracy(50)
    fresh.on_validation_end(sanity, None)
    assert not sanity.should_stop and fresh.stopped_epoch is None
    resumed = StopAtAccuracy(80)
    resumed.load_state_dict(cb.state_dict())
    tr = _fake_trainer(3, 0.5)
    resumed.on_train_start(tr, None)
    assert tr.should_stop and resumed.to_record() == cb.to_record()


def test_stop_at_accuracy_threshold_per_data_set():
    from bioreg.data.digits import DigitsDataModule

    cb = StopAtAccuracy(threshold=80.0, data_thresholds={"DigitsDataModule": 95.0})
    cb.setup(SimpleNamespace(datamodule=DigitsDataModule()), None, "fit")
    tr = _fake_trainer(0, 0.9)
    cb.on_validation_end(tr, None)
    assert not tr.should_stop  # 90 % passes the default 80 % but not the digits threshold
    tr = _fake_trainer(1, 0.96)
    cb.on_validation_end(tr, None)
    assert tr.should_stop
    assert cb.to_record()["stop_at_accuracy"] | {"value": None} == {
        "threshold": 95.0, "data": "DigitsDataModule", "monitor": "val/acc", "reached": True, "epoch": 1,
        "value": None, "epochs_trained": 2}
    other = StopAtAccuracy(threshold=80.0, data_thresholds={"DigitsDataModule": 95.0})
    other.setup(SimpleNamespace(datamodule=object()), None, "fit")
    assert other.threshold == 80.0 and other.data == "object"


def test_stop_at_accuracy_cap_and_errors():
    cb = StopAtAccuracy(threshold=99.0)
    for epoch in range(4):  # never reached: the trainer's max_epochs ends the run
        tr = _fake_trainer(epoch, 0.5)
        cb.on_validation_end(tr, None)
        cb.on_train_epoch_end(tr, None)
        assert not tr.should_stop
    assert cb.to_record()["stop_at_accuracy"] | {"value": None} == {
        "threshold": 99.0, "data": None, "monitor": "val/acc", "reached": False, "epoch": None, "value": None,
        "epochs_trained": 4}
    for bad in (0, -5, 101, float("nan"), "high"):
        with pytest.raises(ConfigError,
                           match=r"threshold is a validation accuracy in percent, in \(0, 100\]"):
            StopAtAccuracy(threshold=bad)
    with pytest.raises(ConfigError,
                       match=r"data_thresholds.DigitsDataModule is a validation accuracy in percent"):
        StopAtAccuracy(data_thresholds={"DigitsDataModule": 180})
    with pytest.raises(ConfigError,
                       match=r"monitors 'val/accuracy', which is not logged; logged metrics: val/acc"):
        StopAtAccuracy(monitor="val/accuracy").on_validation_end(_fake_trainer(0, 0.5), None)


QUICK = ["data=digits", "model=resnet20", "optim=adam", "optim.optimizer.lr=0.003", "optim/scheduler=cosine",
         "trainer.enable_progress_bar=false", "eval.progress=false", "eval.suites=[clean]", "logger=none",
         "name=mix"]


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["mixup", "manifold_mixup"])
def test_digits_run_with_mixup_learns_and_stops_at_the_threshold(reg, tmp_path):
    """Short digits runs (CIFAR ResNet-20, Adam, default alpha and eligible points) with each mixer reach
    >= 85 % test accuracy; StopAtAccuracy (90 %) ends them at the first epoch whose validation accuracy
    reaches it, before the cap of 6, and the record says which (~40 s each on 2 CPU cores)."""
    from bioreg.app.run import run
    from helpers.configs import compose

    cfg = compose(
        [*QUICK, f"reg={reg}", "trainer.max_epochs=6", f"results_dir={tmp_path}/r", f"ckpt_dir={tmp_path}/c"])
    with open_dict(cfg):
        cfg.callbacks = OmegaConf.create({
            "stop": {"_target_": "bioreg.lit.callbacks.stopping.StopAtAccuracy", "threshold": 90.0},
            "log": {"_target_": "helpers.lit_probes.ValAccLog"},
        })
    run(cfg)
    (path,) = sorted((tmp_path / "r").rglob("seed*.json"))
    rec = json.loads(path.read_text())
    history = [100 * v for v in rec["extra"]["val_acc_log"]]
    stop = rec["extra"]["stop_at_accuracy"]
    print(reg, "test", rec["summary"]["test_acc"], "val by epoch", history, "stop", stop)
    assert rec["config"]["reg"][reg]["_target_"].startswith("bioreg.layers.mixup.")
    assert rec["summary"]["test_acc"] >= 85.0
    first = next(i for i, v in enumerate(history) if v >= 90.0)
    assert stop["reached"] and stop["epoch"] == first == len(history) - 1 < 5, (history, stop)
    assert stop["value"] == pytest.approx(history[-1], abs=1e-4) and stop["epochs_trained"] == first + 1
    assert stop["threshold"] == 90.0 and stop["data"] == "DigitsDataModule"


def test_a_bad_threshold_stops_the_run_without_a_record(tmp_path):
    from bioreg.app.run import run
    from helpers.configs import compose

    cfg = compose(["+experiment=vgg11_ch3_mixup", "data=digits", "model=resnet20", "logger=none",
                   "callbacks.stop_at_accuracy.threshold=180", f"results_dir={tmp_path}/r",
                   f"ckpt_dir={tmp_path}/c"])
    with pytest.raises(ConfigError,
                       match=r"threshold is a validation accuracy in percent, in \(0, 100\], got 180"):
        run(cfg)
    assert not list(tmp_path.rglob("*.json"))  # a config mistake, not a failed run
