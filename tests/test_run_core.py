"""Run-level behaviour of bioreg.app.run.run that the tables depend on: smoke runs stay out of the
record index, a rerun with new evaluators adds them without retraining, Singh's overfitting column."""

from __future__ import annotations

import json

import pytest

from bioreg.app.run import run
from helpers.configs import compose

TINY = ["+experiment=demo", "model=allconvnet_small", "model.width=8", "model.width2=8",
        "model.layer1_width=4",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "eval=clean", "eval.progress=false", "logger=none", "trainer.enable_progress_bar=false"]




def _dirs(tmp_path):
    return [f"results_dir={tmp_path}/runs", f"ckpt_dir={tmp_path}/ckpt"]


@pytest.mark.slow
def test_fast_dev_run_never_reaches_the_record_index(tmp_path):
    """A smoke test (trainer.fast_dev_run) must not become a 'completed' cell of a thesis table."""
    run(compose([*TINY, *_dirs(tmp_path), "trainer.fast_dev_run=true"]))
    assert not list((tmp_path / "runs").rglob("seed*.json"))
    (rec_path,) = (tmp_path / "ckpt").rglob("record.json")  # outside Hydra the run dir is the ckpt dir
    rec = json.loads(rec_path.read_text())
    assert rec["smoke"] is True and rec["status"] == "completed"


@pytest.mark.slow
def test_rerun_with_a_new_evaluator_adds_its_section_without_retraining(tmp_path, monkeypatch):
    run(compose([*TINY, *_dirs(tmp_path), "eval.train_acc=true"]))
    (path,) = (tmp_path / "runs").rglob("seed0.json")
    first = json.loads(path.read_text())
    assert set(first["extra"]) == {"epoch_history"}  # per-epoch running train accuracy (Table 3.1)
    # Singh Table 3.1: |train - test| accuracy, both in % of the best model in eval mode
    assert first["summary"]["overfitting"] == pytest.approx(
        abs(first["train"]["eval_acc"] - first["summary"]["test_acc"]), abs=1e-9)

    import lightning

    def no_training(*a, **k):
        raise AssertionError("a completed run must not be trained again")

    monkeypatch.setattr(lightning.Trainer, "fit", no_training)
    fr = ["+eval.evaluators.fisher_rao._target_=bioreg.evaluate.fisher_rao.FisherRaoEvaluator",
          "+eval.evaluators.fisher_rao.n=16", "+eval.evaluators.fisher_rao.progress=false"]
    run(compose([*TINY, *_dirs(tmp_path), "eval.train_acc=true", *fr]))
    second = json.loads(path.read_text())
    assert second["config_key"] == first["config_key"] and second["finished"] == first["finished"]
    assert second["summary"] == first["summary"]  # the trained model's numbers are untouched
    fisher = second["extra"]["fisher_rao"]
    assert fisher["provenance"]["ckpt"].endswith("best.ckpt") and fisher["provenance"]["added_by"]
    # a third launch finds every evaluator present: nothing changes
    run(compose([*TINY, *_dirs(tmp_path), "eval.train_acc=true", *fr]))
    assert json.loads(path.read_text()) == second


@pytest.mark.parametrize("env, kw, mode, project", [
    (None, {}, "offline", "bioreg"),
    (None, {"project": "mine"}, "online", "mine"),
    (None, {"project": "mine", "mode": "offline"}, "offline", "mine"),
    (None, {"mode": "online"}, "online", "bioreg"),
    ("disabled", {"project": "mine", "mode": "online"}, "disabled", "mine"),
])
def test_wandb_is_offline_unless_a_mode_or_project_is_set(monkeypatch, env, kw, mode, project):
    from bioreg.app.run import wandb_kwargs

    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    out = wandb_kwargs(kw)
    assert (out["mode"], out["project"]) == (mode, project)


def test_logger_wandb_config_reaches_the_logger(monkeypatch, tmp_path):
    """logger=wandb composes to the documented defaults and builds a WandbLogger with them (mocked)."""
    import lightning.pytorch.loggers as pl_loggers

    from bioreg.app.run import RunPaths, _loggers

    seen = {}

    class FakeWandb:
        def __init__(self, **kw):
            seen.update(kw)

    monkeypatch.setattr(pl_loggers, "WandbLogger", FakeWandb)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose(["logger=wandb", f"ckpt_dir={tmp_path}"])
    loggers = _loggers(cfg, RunPaths(cfg, "k"))
    assert [type(x).__name__ for x in loggers] == ["CSVLogger", "FakeWandb"]
    assert seen["mode"] == "offline" and seen["project"] == "bioreg" and seen["name"] == "default-s0"
    cfg = compose(["logger=wandb", "logger.wandb.project=thesis", f"ckpt_dir={tmp_path}"])
    _loggers(cfg, RunPaths(cfg, "k"))
    assert (seen["mode"], seen["project"]) == ("online", "thesis")


def test_lightning_does_not_requeue_under_slurm(monkeypatch):
    """One party owns requeueing on SLURM (submitit): Lightning's SLURMEnvironment must not."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from bioreg.app.run import _slurm_plugins

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert _slurm_plugins() == []
    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    (env,) = _slurm_plugins()
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue is False
