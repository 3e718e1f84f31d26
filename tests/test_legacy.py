"""Records, checkpoints and run identities written before bioreg 0.2 (bioreg.config.legacy).

0.2 spells the optimizer and the schedule as ``_target_`` nodes (``optim.optimizer``, the group
``optim/scheduler``) and moved two callbacks. Nothing a user has may change with it:

* every run keeps the config key bioreg 0.1 gave it (``tests/data/config_keys_0_1.json``: every
  experiment and the optimizer presets, keyed by 0.1), so its records are found, its ``last.ckpt``
  resumed and its table cells not doubled;
* every experiment builds the same optimizer, the same parameter groups and, epoch by epoch, the same
  learning rates as 0.1 (its ``optim`` nodes in ``tests/data/optim_0_1.json``, built by 0.1's own
  builder, kept below as the reference);
* a record written by 0.1 (``optim.name: adam``, ``bioreg.lit.stopping.StopAtAccuracy``) is
  evaluated again from its stored config, and its callbacks still build.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bioreg.config.legacy import (
    MOVED_TARGETS,
    identity_view,
    is_legacy_optim,
    legacy_optim,
    upgrade_config,
    upgrade_optim,
)
from bioreg.errors import instantiate
from bioreg.lit.optim import build_optimizer, build_scheduler, param_groups
from bioreg.models import resnet20
from bioreg.results.records import config_key
from helpers.configs import compose

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
KEYS = json.loads((DATA / "config_keys_0_1.json").read_text())["runs"]
OPTIM_0_1 = json.loads((DATA / "optim_0_1.json").read_text())["experiments"]


# ---- bioreg 0.1's builder (lit/optim.py at 0.1; its param_groups is unchanged), the reference ---------

def build_optimizer_0_1(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(cfg.get("name", "sgd")).lower()
    decay, everything = float(cfg.get("weight_decay", 0.0)), bool(cfg.get("decay_bias_and_norm", False))
    groups = param_groups(model, decay, everything)
    lr = float(cfg["lr"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg.get("momentum", 0.0)),
                               nesterov=bool(cfg.get("nesterov", False)))
    assert name == "adam"
    return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))))


def build_scheduler_0_1(opt: torch.optim.Optimizer, cfg: Mapping[str, Any] | None, max_epochs: int):
    cfg = cfg or {}
    name = str(cfg.get("name", "constant")).lower()
    if name == "constant":
        return None
    if name == "multistep":
        milestones: Iterable[int] = cfg.get("milestones", [])
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones),
                                                    gamma=float(cfg.get("gamma", 0.1)))
    assert name == "cosine"
    t_max = cfg.get("t_max") or max(max_epochs, 1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(t_max),
                                                      eta_min=float(cfg.get("eta_min", 0.0)))


# ---- the run identity ------------------------------------------------------------------------------

def _key(overrides: list[str]) -> str:
    resolved = OmegaConf.to_container(compose(overrides), resolve=True)
    resolved.pop("hydra", None)
    return config_key(resolved)


#: one composition of each kind the key must survive: every optim preset (and one with its scheduler's
#: T_max added), an experiment of each moved callback, overridden optimizer values
_FAST = {"", "optim=adam", "optim=cosine", "optim=dutta2019", "optim=pushpull2020", "optim=singh2023",
         "optim=cosine +optim.scheduler.t_max=7", "optim=sgd optim.lr=0.1 optim.weight_decay=0.001",
         "+experiment=demo", "+experiment=vgg11_ch3_mixup", "+experiment=vgg16_dropout_48",
         "+experiment=resnet20_pushpull_finetune"}


@pytest.mark.parametrize("run", [r for r in KEYS if " ".join(r["overrides_0_1"]) in _FAST],
                         ids=lambda r: " ".join(r["overrides_0_1"]) or "defaults")
def test_runs_keep_their_0_1_config_key(run):
    assert _key(run["overrides"] + _recipe_0_1(run["overrides"])) == run["config_key"]


_SINGH_OPTIMIZER = OmegaConf.to_container(OmegaConf.load(REPO / "conf/optim/singh2023.yaml"))["optimizer"]


def _recipe_0_1(overrides: list[str]) -> list[str]:
    """The overrides that set back the defaults issue 17 changed (the authors' code where the texts are
    silent: Singh's two affine stages, decay on every parameter and PyTorch's init; push-pull's reflection
    padding; docs/decisions/protocols.md). With them a run is the one bioreg 0.1 trained, and keeps
    its key: the identity leaves the added keys out at their 0.1 value only."""
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    data, model, optim = cfg["data"], cfg["model"], cfg["optim"]
    out = ["data.crop_padding_mode=zeros"] if data.get("crop_padding_mode") == "reflect" else []
    out += ["data.affine_repeats=1"] if data.get("affine_repeats") == 2 else []
    out += ["model.init=torchvision"] if model.get("init") == "default" else []
    if optim["optimizer"] == _SINGH_OPTIMIZER and optim["decay_bias_and_norm"]:
        out.append("optim.decay_bias_and_norm=false")
    return out


@pytest.mark.slow
def test_every_experiment_keeps_its_0_1_config_key():
    """All 99 compositions (every experiment, ~40 s on 2 cores): each keeps its 0.1 key, the Singh and
    push-pull runs with the defaults issue 17 changed set back (and only those change key without)."""
    recipes = {" ".join(r["overrides"]): _recipe_0_1(r["overrides"]) for r in KEYS}
    changed = {" ".join(r["overrides"]): r["config_key"] for r in KEYS
               if _key(r["overrides"] + recipes[" ".join(r["overrides"])]) != r["config_key"]}
    assert not changed
    moved = {" ".join(r["overrides"]) for r in KEYS if _key(r["overrides"]) != r["config_key"]}
    assert moved == {name for name, recipe in recipes.items() if recipe}
    assert any("vgg16" in m for m in moved) and any("pushpull" in m for m in moved)


def test_identity_view_is_the_0_1_spelling_and_other_optimizers_keep_their_own():
    old = OPTIM_0_1["resnet20_pushpull"]["optim"]
    new = upgrade_optim(old)
    assert identity_view({"optim": new, "x": 1}) == {"optim": old, "x": 1}
    adamw = {**new, "optimizer": {**new["optimizer"], "_target_": "torch.optim.AdamW"}}
    assert identity_view({"optim": adamw}) == {"optim": adamw}  # 0.1 had no AdamW: keyed as it is
    extra = {**new, "optimizer": {**new["optimizer"], "dampening": 0.1}}
    assert identity_view({"optim": extra}) == {"optim": extra}
    cb = {"callbacks": {"s": {"_target_": "bioreg.lit.callbacks.stopping.StopAtAccuracy"}}}
    assert identity_view(cb) == {"callbacks": {"s": {"_target_": "bioreg.lit.stopping.StopAtAccuracy"}}}


# ---- the optimizer, its parameter groups and its schedule -------------------------------------------

def _distinct_optims() -> dict[str, tuple[dict, int]]:
    """One experiment per distinct (0.1 optim node, max_epochs)."""
    out: dict[str, tuple[dict, int]] = {}
    seen: set[str] = set()
    for name, e in sorted(OPTIM_0_1.items()):
        sig = json.dumps([e["optim"], e["max_epochs"]], sort_keys=True)
        if sig not in seen:
            seen.add(sig)
            out[name] = (e["optim"], e["max_epochs"])
    return out


DISTINCT = _distinct_optims()


@pytest.mark.parametrize("experiment", sorted(DISTINCT))
def test_experiment_composes_to_the_0_1_optimizer(experiment):
    old, _ = DISTINCT[experiment]
    overrides = [f"+experiment={experiment}"]
    new = OmegaConf.to_container(compose(overrides).optim, resolve=True)
    assert new == upgrade_optim(old) and legacy_optim(new) == old
    assert not is_legacy_optim(new) and is_legacy_optim(old)


def test_every_experiment_is_among_the_checked_optimizers():
    """Every 0.1 optim node of every experiment is one of those composed above (so the check covers all)."""
    kinds = {json.dumps([v["optim"], v["max_epochs"]], sort_keys=True) for v in OPTIM_0_1.values()}
    assert len(kinds) == len(DISTINCT) and len(OPTIM_0_1) >= 90


def _groups(opt: torch.optim.Optimizer) -> list[dict]:
    return [{k: ([id(p) for p in v] if k == "params" else v) for k, v in g.items()} for g in opt.param_groups]


@pytest.mark.parametrize("experiment", sorted(DISTINCT))
def test_same_optimizer_param_groups_and_learning_rate_every_epoch(experiment):
    old, max_epochs = DISTINCT[experiment]
    model = resnet20()
    a, b = build_optimizer_0_1(model, old), build_optimizer(model, upgrade_optim(old))
    assert type(a) is type(b) and _groups(a) == _groups(b)
    assert a.state_dict()["param_groups"] == b.state_dict()["param_groups"]
    sa = build_scheduler_0_1(a, old.get("scheduler"), max_epochs)
    sb = build_scheduler(b, upgrade_optim(old)["scheduler"], max_epochs)
    assert type(sa) is type(sb)
    lrs_a, lrs_b = [], []
    for _ in range(max_epochs):
        lrs_a.append([g["lr"] for g in a.param_groups])
        lrs_b.append([g["lr"] for g in b.param_groups])
        for opt, sched in ((a, sa), (b, sb)):
            opt.step()
            if sched is not None:
                sched.step()
    assert lrs_a == lrs_b  # exactly, epoch by epoch
    if sa is not None:
        assert sa.state_dict() == sb.state_dict()


def test_a_0_1_checkpoints_optimizer_state_loads_into_the_0_2_optimizer():
    """A 0.1 run resumed by 0.2 (same key, same folder): Lightning loads the saved optimizer and
    scheduler states into the ones 0.2 builds."""
    old = OPTIM_0_1["allconvnet_baseline"]["optim"]
    m1, m2 = resnet20(), resnet20()
    m2.load_state_dict(m1.state_dict())
    a = build_optimizer_0_1(m1, old)
    sa = build_scheduler_0_1(a, old["scheduler"], 350)
    m1(torch.randn(2, 3, 32, 32)).sum().backward()
    a.step()
    sa.step()
    b = build_optimizer(m2, upgrade_optim(old))
    sb = build_scheduler(b, upgrade_optim(old)["scheduler"], 350)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    sb.load_state_dict(sa.state_dict())
    assert b.state_dict()["param_groups"] == a.state_dict()["param_groups"] and sb.last_epoch == 1


# ---- a record of bioreg 0.1 --------------------------------------------------------------------------

def _old_record_config(overrides: list[str]) -> dict:
    """The resolved config of ``overrides`` as bioreg 0.1 stored it in a record."""
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    cfg.pop("hydra", None)
    return identity_view(cfg)


def test_upgrade_config_reads_a_0_1_record_config_and_keeps_a_0_2_one():
    new = OmegaConf.to_container(compose(["+experiment=vgg11_ch3_mixup"]), resolve=True)
    old = identity_view(new)
    assert old["optim"]["name"] == "sgd" and old["callbacks"]["stop_at_accuracy"]["_target_"] in MOVED_TARGETS
    assert upgrade_config(old) == new and upgrade_config(new) == new
    stop = instantiate(upgrade_config(old)["callbacks"]["stop_at_accuracy"])
    assert type(stop).__module__ == "bioreg.lit.callbacks.stopping" and stop.threshold == 80.0


def test_a_0_1_record_is_evaluated_again(tmp_path):
    """scripts/evaluate_checkpoint.py's path (bioreg.app.evaluate_checkpoint) on a record whose config is
    in the 0.1 spelling: the model is rebuilt and its evaluators run."""
    from bioreg.app.build import build
    from bioreg.app.evaluate_checkpoint import evaluate_checkpoint

    old = _old_record_config(["+experiment=demo", "model.width=8", "model.width2=8", "model.layer1_width=4"])
    assert old["optim"] == {"name": "adam", "lr": 0.003, "betas": [0.9, 0.999], "weight_decay": 0.0,
                            "decay_bias_and_norm": False, "scheduler": {"name": "cosine"}}
    _, lit = build(OmegaConf.create(upgrade_config(old)))
    torch.save({"state_dict": lit.state_dict(), "epoch": 4}, tmp_path / "best.ckpt")
    fisher = {"_target_": "bioreg.evaluate.fisher_rao.FisherRaoEvaluator", "n": 8, "batch_size": 8,
              "progress": False}
    sections = evaluate_checkpoint(old, tmp_path / "best.ckpt", {"fisher_rao": fisher}, device="cpu",
                                   progress=False)
    assert sections["fisher_rao"]["n"] == 8 and sections["fisher_rao"]["provenance"]["epoch"] == 4
