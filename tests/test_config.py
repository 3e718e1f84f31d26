"""The config tree: every experiment composes and builds, and every kind of bad input fails clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from bioreg.app.run import build
from bioreg.config import ConfigError
from bioreg.config.overrides import check_override_key
from bioreg.config.validate import validate_config
from bioreg.layers.base import RegularizerConfigError
from bioreg.models.points import InsertionError
from helpers.configs import REPO, compose, experiments


def test_there_are_experiments():
    names = experiments()
    for required in ("demo", "allconvnet_baseline", "allconvnet_baseline_dropout"):
        assert required in names


#: one experiment of each model family and kind of regularizer (and the fine-tuning one) in the fast
#: suite; all of them (~90 models, several minutes on 2 cores) under the slow mark
REPRESENTATIVE = {"demo", "allconvnet_baseline_dropout", "corr_poisson_layer1", "vgg11_corrdrop_layer1",
                  "vgg11_ch3_manifold_mixup", "vgg16_dropout_48", "resnet20_pushpull_finetune",
                  "resnet14_pushpull_h1_a05", "alexnet_cifar_reference"}


@pytest.mark.parametrize("name", [pytest.param(e, marks=() if e in REPRESENTATIVE else pytest.mark.slow)
                                  for e in experiments()])
def test_experiment_composes_builds_and_trains_one_step(name, tmp_path):
    """Compose (with the offline digits data), validate, instantiate, one forward/backward pass."""
    cfg = compose([f"+experiment={name}", "data=digits"])
    if cfg.ckpt_required:  # a fine-tuning experiment: give it the weights of a freshly built model
        from hydra.utils import instantiate

        torch.save(instantiate(cfg.model).state_dict(), tmp_path / "init.ckpt")
        cfg = compose([f"+experiment={name}", "data=digits", f"ckpt={tmp_path / 'init.ckpt'}"])
    validate_config(cfg)
    assert cfg.name == name
    torch.manual_seed(0)
    dm, lit = build(cfg)
    lit.train()
    x = torch.rand(4, *dm.input_shape)
    y = torch.arange(4) % dm.num_classes
    loss = torch.nn.functional.cross_entropy(lit(x), y)
    loss.backward()
    grads = [p.grad for p in lit.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_experiment_keeps_the_thesis_schedule():
    cfg = compose(["+experiment=allconvnet_baseline"])
    opt = cfg.optim.optimizer
    assert cfg.trainer.max_epochs == 350 and opt.nesterov and opt.weight_decay == 1e-3
    assert list(cfg.optim.scheduler.milestones) == [200, 250, 300] and opt.lr == 0.01
    assert cfg.data.val_size == 10000 and cfg.model.layer1_width == 10
    drop = compose(["+experiment=allconvnet_baseline_dropout"]).reg
    assert {k: (v.at, v.p) for k, v in drop.items()} == {
        "drop_input": ("input", 0.2), "drop_layer3": ("layer3", 0.5), "drop_layer6": ("layer6", 0.5)}


def test_unknown_experiment_lists_options():
    with pytest.raises(MissingConfigException) as e:
        compose(["+experiment=no_such_experiment"])
    assert "allconvnet_baseline" in str(e.value) and "demo" in str(e.value)


def test_unknown_model_lists_options():
    with pytest.raises(MissingConfigException) as e:
        compose(["model=resnet21"])
    assert "resnet20" in str(e.value) and "vgg16" in str(e.value)


def test_misspelt_key_names_valid_keys():
    cfg = compose(["+trainer.max_epoch=3"])
    with pytest.raises(ConfigError,
                       match=r"unknown config key 'trainer.max_epoch' — did you mean 'max_epochs'\?.*Valid "
                             r"keys"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match=r"did you mean 'decay_bias_and_norm'"):
        check_override_key("optim.decay_bias_and_nrm")
    with pytest.raises(ConfigError,
                       match=r"'optim.weight_decay' — since bioreg 0.2 it is optim.optimizer.weight_decay"):
        check_override_key("optim.weight_decay")
    with pytest.raises(ConfigError, match="Valid keys: .*seed"):
        check_override_key("sed")
    check_override_key("optim.scheduler.milestones")  # valid: no error
    check_override_key("model.layer1_width")  # target-backed: checked after composition


def test_misspelt_model_argument_names_valid_ones():
    cfg = compose(["model=allconvnet", "+model.layer1_widht=12"])
    with pytest.raises(ConfigError, match=r"model.layer1_widht.*did you mean 'layer1_width'"):
        validate_config(cfg)


def test_misspelt_regularizer_argument():
    cfg = compose(["reg=allconv_dropout", "+reg.drop_input.prob=0.1"])
    with pytest.raises(ConfigError, match=r"reg.drop_input.prob.*Valid keys.*\bp\b"):
        validate_config(cfg)


@pytest.mark.parametrize("override, match", [
    ("+model.widht=3", r"model.widht.*Valid keys.*widths"),  # resnet20 is a factory function
    ("+reg.cg.sigmaa=1", r"reg.cg.sigmaa.*did you mean 'sigma'"),  # CorrelatedGaussian(**kwargs) -> base
])
def test_misspelt_key_of_a_kwargs_passing_target(override, match):
    """Targets that pass **kwargs on (a subclass to its base, a factory to its class) are still checked."""
    cfg = compose(["model=resnet20", "reg=cg", "reg.cg.at=layer1", override])
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


@pytest.mark.parametrize("seed", ["null", "'three'", "1.5"])
def test_seed_must_be_an_integer(seed):
    with pytest.raises(ConfigError, match=r"seed must be an integer \(0 is a real seed\)"):
        validate_config(compose([f"seed={seed}"]))
    validate_config(compose(["seed=0"]))


def test_finetune_experiment_requires_a_checkpoint():
    cfg = compose(["+experiment=resnet20_pushpull_finetune", "data=digits"])
    with pytest.raises(ConfigError,
                       match=r"ckpt is required by experiment 'resnet20_pushpull_finetune'.*ckpt="):
        validate_config(cfg)
    validate_config(compose(["+experiment=resnet20_pushpull_finetune", "data=digits", "ckpt=some/best.ckpt"]))


def test_unknown_insertion_point_lists_valid_points():
    cfg = compose(["data=digits", "reg=allconv_dropout", "reg.drop_layer3.at=layer33"])
    with pytest.raises(InsertionError,
                       match=r"unknown insertion point 'layer33'.*valid points: input, layer1"):
        build(cfg)


def test_negative_dropout_probability():
    cfg = compose(["data=digits", "reg=allconv_dropout", "reg.drop_layer3.p=-0.1"])
    with pytest.raises(RegularizerConfigError, match=r"p must be in \[0, 1\), got -0.1"):
        build(cfg)


def test_bad_on_existing():
    cfg = compose(["on_existing=sometimes"])
    with pytest.raises(ConfigError, match="on_existing must be one of skip, overwrite, error"):
        validate_config(cfg)


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


@pytest.mark.slow
def test_train_py_reports_user_errors_cleanly(tmp_path):
    out = _train("trainer.max_epoch=3")
    assert out.returncode == 2 and "did you mean 'max_epochs'" in out.stderr and "Traceback" not in out.stderr
    out = _train("data=digits", "reg=allconv_dropout", "reg.drop_layer3.at=nowhere",
                 f"results_dir={tmp_path}",
                 f"ckpt_dir={tmp_path}", f"hydra.run.dir={tmp_path}/out")
    assert out.returncode == 2 and "valid points: input, layer1" in out.stderr
    assert not list(tmp_path.glob("**/seed*.json"))  # a config mistake leaves no failed-run record


@pytest.mark.slow  # two train.py subprocesses (each imports torch, Lightning and Hydra: 15-90 s on 2 cores)
def test_help_and_cfg_job():
    out = _train("--cfg", "job", "+experiment=demo")
    assert out.returncode == 0, out.stderr
    job = OmegaConf.create(out.stdout)
    assert job.name == "demo" and job.data._target_.endswith("DigitsDataModule")
