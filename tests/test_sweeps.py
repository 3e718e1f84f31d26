"""Sweep files, Make targets and launcher configs (conf/sweep/, conf/hydra/launcher/, mk/), and skip-existing.

* every thesis table has a sweep over exactly the table's experiments and seeds 0-4, generated from its
  table spec (bioreg.results.sweeps), as Hydra's sweeper expands it: all of them, without the spec's
  ablation runs (``sweep_ablations=false``), and with the command line's ``seed=``/``+experiment=``;
* every job of every sweep in conf/sweep/ (table sweeps and any other) composes, under its own
  experiment name, and no experiment name gets two different configurations across sweeps;
* the SLURM and local launchers compose through ``train.py +sweep=... hydra/launcher=... --cfg hydra``
  with the documented overrides;
* a relaunched sweep trains only the seeds that have no completed record.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bioreg.results.sweeps import register_resolvers
from bioreg.results.sweeps import sweep_params as resolved_sweep_params
from bioreg.results.tables import all_specs, table_ids
from helpers.runif import RunIf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SPECS = {s.stem: s for s in all_specs()}
pytestmark = pytest.mark.timeout(240)


def sweep_params(stem: str) -> dict:
    text = (CONF / "sweep" / f"{stem}.yaml").read_text()
    assert text.splitlines()[0] == "# @package _global_", stem
    return resolved_sweep_params(CONF / "sweep" / f"{stem}.yaml")


def test_one_sweep_per_table() -> None:
    assert sorted(p.stem for p in (CONF / "sweep").glob("table_*.yaml")) == sorted(SPECS)


@pytest.mark.parametrize("stem", sorted(SPECS))
def test_sweep_runs_the_tables_experiments_over_five_seeds(stem: str) -> None:
    params = sweep_params(stem)
    spec = SPECS[stem]
    assert str(params["+experiment"]).split(",") == spec.experiments
    assert str(params["seed"]) == ",".join(str(s) for s in spec.seeds) == "0,1,2,3,4"
    if spec.id.startswith("n3."):
        # Tables 3.4-3.6 need the attack / Fisher-Rao evaluators, 3.4-3.5 the authors' attack settings too
        assert params["eval"] == "attacks_authors"
    else:
        assert set(params) == {"+experiment", "seed"}


def sweeper_jobs(stem: str, *cmdline: str) -> list[tuple[str, int]]:
    """The (experiment, seed) of every job of ``train.py -m +sweep=<stem> <cmdline>``, as Hydra's sweeper
    expands them: compose the master config, instantiate ``hydra.sweeper`` as Hydra does (this resolves
    the experiment list from the table spec), then its own parse of params + command line and
    ``split_arguments``."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.plugins import Plugins
    from hydra.types import RunMode

    register_resolvers()  # as train.py does at import
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = GlobalHydra.instance().hydra.compose_config("config", [f"+sweep={stem}", *cmdline],
                                                          run_mode=RunMode.MULTIRUN)
    sweeper = Plugins.instance()._instantiate(cfg.hydra.sweeper)  # what Plugins.instantiate_sweeper does
    overrides = OverridesParser.create().parse_overrides([*sweeper._parse_config(), *cmdline])
    (batch,) = type(sweeper).split_arguments(overrides, None)
    jobs = []
    for job in batch:
        kv = dict(o.split("=", 1) for o in job)
        jobs.append((kv["+experiment"], int(kv["seed"])))
    return jobs


@pytest.mark.parametrize("stem", sorted(SPECS))
def test_hydras_sweeper_expands_each_sweep_into_the_tables_runs(stem: str) -> None:
    spec = SPECS[stem]
    assert sweeper_jobs(stem) == [(e, s) for e in spec.experiments for s in spec.seeds]
    core = spec.sweep_experiments(ablations=False)
    assert sweeper_jobs(stem, "sweep_ablations=false") == [(e, s) for e in core for s in spec.seeds]
    assert set(core) == {a.experiment for a in (*spec.rows, *spec.columns)
                         if a.experiment and not a.is_ablation} | {e for _, _, e, _ in spec.overrides if e}


def test_command_line_seeds_and_experiments_replace_the_sweeps() -> None:
    """make reproduce-table-2.5 SEEDS=0,1 EXPERIMENTS=...: the command line's lists win."""
    assert sweeper_jobs("table_2_5", "seed=3,4") == [(e, s) for e in SPECS["table_2_5"].experiments
                                                     for s in (3, 4)]
    assert sweeper_jobs("table_2_5", "+experiment=corr_gaussian_layer1,allconvnet_baseline", "seed=1") == [
        ("corr_gaussian_layer1", 1), ("allconvnet_baseline", 1)]


def test_ablation_runs_are_the_specs_ablation_axes() -> None:
    """Table 2.5's UG/CG std readings (compare_to) are left out by sweep_ablations=false, nothing else."""
    spec = SPECS["table_2_5"]
    left_out = [e for e in spec.experiments if e not in spec.sweep_experiments(ablations=False)]
    assert left_out == ["uncorr_gaussian_std_layer1", "corr_gaussian_std_layer1"]
    from bioreg.results.tables import spec_from_dict

    d = {"id": "x", "title": "t", "seeds": [0], "rows": [{"label": "acc", "metric": "summary.test_acc"}],
         "columns": [{"label": "A", "experiment": "a"}, {"label": "B", "experiment": "b", "ablation": True},
                     {"label": "A2", "experiment": "a", "ablation": True}]}
    s = spec_from_dict(d)
    assert s.sweep_experiments() == ["a", "b"] and s.sweep_experiments(ablations=False) == ["a"]
    assert s.ablations == []  # `ablation: true` alone pairs with no printed column (compare_to does)


def test_tables_sharing_models_share_sweeps() -> None:
    # Tables 2.3/2.5 (and 2.4/2.6) are two evaluations of the same trained models
    assert sweep_params("table_2_3") == sweep_params("table_2_5")
    assert sweep_params("table_2_4") == sweep_params("table_2_6")


def _compose(*overrides: str, hydra: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
_COMPOSED: dict[tuple[str, ...], tuple[str, int, str]] = {}  # sweeps share models: compose each job once


def _jobs(stem: str) -> list[tuple[str, ...]]:
    """The overrides of every job of one sweep (its Cartesian product, seed fixed to 4: seeds don't change
    the config key)."""
    params = sweep_params(stem)
    assert "+experiment" in params and "seed" in params, f"{stem}: a sweep needs +experiment and seed"
    extra = [f"{k}={v}" for k, v in params.items() if k not in ("+experiment", "seed")]
    assert not any("," in e for e in extra), f"{stem}: sweep only experiments and seeds, not {extra}"
    return [(exp, *extra) for exp in str(params["+experiment"]).split(",")]


def _composed(stem: str, job: tuple[str, ...]) -> tuple[str, int, str]:
    if job not in _COMPOSED:
        from omegaconf import OmegaConf

        from bioreg.results.records import config_key

        exp, *extra = job
        cfg = _compose(f"+sweep={stem}", f"+experiment={exp}", "seed=4", *extra)
        resolved = OmegaConf.to_container(cfg, resolve=True)  # as bioreg.app.run.run keys its records
        resolved.pop("hydra", None)
        _COMPOSED[job] = (cfg.name, cfg.seed, config_key(resolved))
    return _COMPOSED[job]


def test_sweeps_are_found() -> None:
    assert len(SWEEPS) >= len(SPECS) and set(SPECS) <= set(SWEEPS)


@pytest.mark.parametrize("stem", SWEEPS)
def test_every_job_of_every_sweep_composes(stem: str) -> None:
    for exp, *extra in _jobs(stem):
        assert (CONF / "experiment" / f"{exp}.yaml").is_file(), f"{stem}: conf/experiment/{exp}.yaml missing"
        for e in extra:
            group, _, option = e.partition("=")
            if (CONF / group).is_dir():
                assert (
                    CONF / group / f"{option}.yaml").is_file(), f"{stem}: conf/{group}/{option}.yaml missing"
        name, seed, _ = _composed(stem, (exp, *extra))
        assert (name, seed) == (exp, 4)  # records land under the experiment's own name


def test_no_experiment_name_has_two_configs() -> None:
    # An experiment trained by two sweeps (or twice in one) with different settings would give two config
    # keys under one name: select_runs reports them as duplicates and drops the cell (the bug of the old
    # pushpull_sensitivity sweep, which swept reg.pushpull.* under resnet20_pushpull).
    keys: dict[str, dict[str, list[str]]] = {}
    for stem in SWEEPS:
        for job in _jobs(stem):
            name, _, key = _composed(stem, job)
            keys.setdefault(name, {}).setdefault(key, []).append(stem)
    clashes = {n: k for n, k in keys.items() if len(k) > 1}
    assert not clashes, f"experiment names with several config keys (sweeps per key): {clashes}"


def _mk_list(path: Path, var: str) -> list[str]:
    m = re.search(rf"^{var} := (.+)$", path.read_text(), re.M)
    assert m, f"{var} not in {path}"
    return m.group(1).split()


def test_make_targets_cover_every_table() -> None:
    assert _mk_list(REPO / "mk" / "tables.mk", "TABLE_IDS") == table_ids()
    assert _mk_list(REPO / "mk" / "reproduce.mk", "REPRODUCE_IDS") == table_ids()


@RunIf(executables=("make",))
def test_reproduce_target_builds_the_launcher_overrides() -> None:
    def dry(*args: str) -> str:
        out = subprocess.run(["make", "-s", "-n", *args, "PY=python"], cwd=REPO, capture_output=True,
                             text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return " ".join(out.stdout.split())

    cmd = dry("reproduce-table-2.5", "LAUNCHER=slurm", "SLURM_PARTITION=gpu", "SLURM_TIME=90", "SEEDS=3,4")
    assert "python train.py -m +sweep=table_2_5" in cmd
    for part in ("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90",
                 "seed=3,4"):
        assert part in cmd
    assert "hydra.launcher.mem_gb" not in cmd  # unset -> the value in conf/hydra/launcher/slurm.yaml
    local = dry("reproduce-table-n3.4", "LAUNCHER=local", "JOBS=3")
    assert "+sweep=table_n3_4" in local and "hydra/launcher=local hydra.sweeper.max_batch_size=3" in local
    assert "hydra/launcher" not in dry("reproduce-table-4.1")
    assert "scripts/make_table.py n3.2 --results-dir runs" in dry("table-n3.2", "RESULTS_DIR=runs")
    bad = subprocess.run(["make", "-s", "reproduce-table-2.5", "LAUNCHER=pbs", "PY=true"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "valid: basic, local, slurm" in bad.stderr


def _train_module():
    spec = importlib.util.spec_from_file_location("bioreg_train_script", REPO / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Hydra finds config_path="conf" next to the script only for a task function of module __main__
    mod.main.__wrapped__.__module__ = "__main__"
    return mod


def _train(monkeypatch, *argv: str) -> None:
    """``python train.py ARGV`` in this process (Hydra's basic launcher runs the jobs in-process)."""
    GlobalHydra.instance().clear()
    with monkeypatch.context() as m:
        m.setattr(sys, "argv", ["train.py", *argv])
        _train_module().main()
    GlobalHydra.instance().clear()


def test_slurm_launcher_composes_with_documented_overrides(monkeypatch, capsys) -> None:
    # (Hydra takes --cfg without -m: the launcher and sweeper sections are those the multirun uses)
    _train(monkeypatch, "+sweep=table_2_5", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
           "hydra.launcher.gpus_per_node=2", "hydra.launcher.cpus_per_task=6",
           "hydra.launcher.timeout_min=90",
           "hydra.launcher.mem_gb=40", "hydra.launcher.max_num_timeout=5", "--cfg", "all", "--resolve")
    cfg = yaml.safe_load(capsys.readouterr().out)["hydra"]
    la = cfg["launcher"]
    assert la["_target_"] == "hydra_plugins.bioreg_launcher.slurm.BioregSlurmLauncher"
    assert la["check_request"] is True and la["poll_s"] > 0
    assert (la["partition"], la["gpus_per_node"], la["cpus_per_task"], la["timeout_min"], la["mem_gb"]) == (
        "gpu", 2, 6, 90, 40)
    assert la["max_num_timeout"] == 5 > 0
    assert cfg["sweeper"]["params"]["+experiment"].startswith("allconvnet_baseline,")
    # the defaults of the file: requeue on, one GPU per run
    defaults = yaml.safe_load((CONF / "hydra" / "launcher" / "slurm.yaml").read_text())
    assert defaults["max_num_timeout"] > 0 and defaults["gpus_per_node"] == 1


def test_local_launcher_composes(monkeypatch, capsys) -> None:
    _train(monkeypatch, "+sweep=table_4_1", "hydra/launcher=local", "hydra.sweeper.max_batch_size=3",
           "--cfg", "hydra")
    cfg = yaml.safe_load(capsys.readouterr().out)["hydra"]
    assert cfg["launcher"]["_target_"].endswith("submitit_launcher.LocalLauncher")
    assert cfg["sweeper"]["max_batch_size"] == 3


TINY = [
    "+experiment=demo", "model=allconvnet_small", "model.width=8", "model.width2=8", "model.layer1_width=4",
    "data.batch_size=16", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "eval=clean", "eval.progress=false", "logger=none", "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
]


@pytest.mark.slow
def test_relaunched_sweep_runs_only_missing_seeds(tmp_path: Path, monkeypatch) -> None:
    """Two real multiruns of a tiny training run (trains: slow)."""
    common = [*TINY, f"results_dir={tmp_path}/runs", f"ckpt_dir={tmp_path}/ckpt"]
    _train(monkeypatch, "-m", *common, "seed=0", f"hydra.sweep.dir={tmp_path}/sweep1")
    (rec0,) = list((tmp_path / "runs").rglob("seed0.json"))
    before = rec0.read_bytes()
    _train(monkeypatch, "-m", *common, "seed=0,1", f"hydra.sweep.dir={tmp_path}/sweep2")
    assert rec0.read_bytes() == before  # seed 0 kept, not retrained
    (rec1,) = list((tmp_path / "runs").rglob("seed1.json"))
    assert json.loads(rec1.read_text())["status"] == "completed"
    assert rec1.parent == rec0.parent  # same experiment, same config key
    # job 0 of the relaunch was skipped (no run record in its output folder), job 1 trained
    assert not (tmp_path / "sweep2" / "0" / "record.json").exists()
    assert json.loads((tmp_path / "sweep2" / "1" / "record.json").read_text())["seed"] == 1
    assert torch.load(next((tmp_path / "ckpt").rglob("seed1/last.ckpt")), map_location="cpu",
                      weights_only=True)["epoch"] == 0
