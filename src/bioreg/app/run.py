"""One training run, end to end: config → instantiate → LitClassifier → Trainer → evaluate → record.

``train.py`` hands the composed Hydra config to :func:`run`, which returns the
monitored metric (best validation accuracy, %) so that sweepers can use it.

Fault tolerance: checkpoints go to a directory fixed by the run's identity
(``<ckpt_dir>/<name>/<config_key>/seed<k>/``), independent of Hydra's dated
output folder and of any SLURM job id, and ``fit`` resumes from ``last.ckpt``
there when it exists. A relaunched or requeued run therefore continues where it
stopped; a completed run is skipped (``on_existing=skip``) because its record
exists.

:func:`run` is a sequence of named stages (docs/interfaces.md, "Run stages"): :func:`validate` →
:func:`prepare_places` → lock (:class:`bioreg.app.runlock.RunLock`, one process per config key + seed)
→ :func:`existing_record` → :func:`build_run` → :func:`fit` → :func:`evaluate` →
:func:`write_record`. Checkpoints are read only with ``weights_only=True`` and written atomically
(:mod:`bioreg.app.ckpt_io`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bioreg.app.build import abs_path, build, load_net_weights
from bioreg.app.ckpt_io import AtomicCheckpointIO, load_for_eval, move_aside, resume_point
from bioreg.app.evaluate_checkpoint import add_sections, evaluate_checkpoint, record_files
from bioreg.app.runlock import RunLock
from bioreg.config.validate import validate_config
from bioreg.errors import ConfigError, UserError, instantiate, require_extra
from bioreg.launch.stints import carry_stints, close_stint, stop_status
from bioreg.lit.perf import configure_performance
from bioreg.results.records import (
    RECORD_VERSION,
    UNREADABLE,
    RecordStore,
    config_key,
    git_info,
    package_versions,
    protocol_of_config,
    task_overrides,
    utc_now,
)

log = logging.getLogger("bioreg")

__all__ = ["run", "build", "load_net_weights", "RunPaths", "RunPlan"]


class RunPaths:
    def __init__(self, cfg: DictConfig, key: str):
        self.results = Path(abs_path(cfg.results_dir))
        self.ckpt = Path(abs_path(cfg.ckpt_dir)) / str(cfg.name) / key / f"seed{int(cfg.seed)}"
        try:
            from hydra.core.hydra_config import HydraConfig

            self.run_dir = Path(HydraConfig.get().runtime.output_dir)
        except Exception:  # not under Hydra (tests, notebooks)
            self.run_dir = self.ckpt


def _callbacks(cfg: DictConfig, paths: RunPaths):
    from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar

    from bioreg.lit.callbacks.checkpoint import RelocatableModelCheckpoint
    from bioreg.lit.callbacks.epoch_history import EpochHistory
    from bioreg.lit.callbacks.model_summary import ModelSummaryNoFlops
    from bioreg.lit.callbacks.resume import RNGStateCheckpoint

    cbs: list[Any] = [
        # ModelCheckpoints that keep their best score when the checkpoint folder moved (a copied folder,
        # another ckpt_dir): a relaunch there picks the same best epoch as an uninterrupted run
        RelocatableModelCheckpoint(dirpath=paths.ckpt, filename="best", monitor="val/acc", mode="max",
                                   save_top_k=1, auto_insert_metric_name=False),
        # last.ckpt after *every* epoch (Lightning >= 2.5 writes `save_last` only when the monitored
        # checkpoint is written too, i.e. when val/acc improved): what a relaunched run resumes from
        RelocatableModelCheckpoint(dirpath=paths.ckpt, filename="last", monitor=None, save_top_k=1,
                                   every_n_epochs=1, enable_version_counter=False,
                                   auto_insert_metric_name=False),
        RNGStateCheckpoint(),  # a resumed run continues the RNG streams of the interrupted one (bit-exact)
        ModelSummaryNoFlops(),  # Lightning's summary would show "FLOPs 0" (no example input)
        EpochHistory(),  # per-epoch running train accuracy + validation accuracy (train.running_acc_*)
    ]
    if cfg.trainer.get("enable_progress_bar", True):
        cbs.append(RichProgressBar(leave=True))
    if cfg.logger.get("csv", True) or cfg.logger.get("wandb"):
        cbs.append(LearningRateMonitor(logging_interval="epoch"))
    for name, entry in (cfg.get("callbacks") or {}).items():
        if entry is not None:
            cbs.append(instantiate(entry))
            log.info("callback %s: %s", name, entry._target_)
    return cbs


def _loggers(cfg: DictConfig, paths: RunPaths):
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = []
    if cfg.logger.get("csv", True):
        loggers.append(CSVLogger(save_dir=str(paths.run_dir), name="csv", version=""))
    wb = cfg.logger.get("wandb")
    if wb:
        require_extra("wandb", "wandb", "logger=wandb")  # imported by Lightning's logger, only here
        from lightning.pytorch.loggers import WandbLogger

        kw = wandb_kwargs(OmegaConf.to_container(wb, resolve=True))
        kw.setdefault("name", f"{cfg.name}-s{cfg.seed}")
        kw.setdefault("save_dir", str(paths.run_dir))
        loggers.append(WandbLogger(**kw))
    return loggers


def wandb_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """W&B stays offline unless the user asks otherwise: ``WANDB_MODE`` or ``mode`` wins; without
    either, naming a ``project`` means online, and no project means offline under "bioreg"."""
    kw = dict(kw)
    mode = os.environ.get("WANDB_MODE") or kw.get("mode")
    kw["mode"] = mode or ("online" if kw.get("project") else "offline")
    kw["project"] = kw.get("project") or "bioreg"
    return kw


@dataclass
class RunPlan:
    """What one run is: its identity, the places it writes, and its record store."""

    cfg: DictConfig
    resolved: dict[str, Any]
    key: str
    name: str
    seed: int
    smoke: bool  # trainer.fast_dev_run: a smoke test, kept out of results_dir
    paths: RunPaths
    store: RecordStore

    @property
    def label(self) -> str:
        return f"run {self.name} (config {self.key}, seed {self.seed})"


@dataclass
class Built:
    dm: Any
    lit: Any
    evaluators: dict[str, Any]
    trainer: Any


def run(cfg: DictConfig) -> float:
    """Train, evaluate and record one run; returns the best validation accuracy (%).

    Stages: :func:`validate` → :func:`prepare_places` → (lock) → :func:`existing_record` →
    :func:`build_run` → :func:`fit` → :func:`evaluate` → :func:`write_record`. A :class:`UserError`
    raised by any of them leaves no record; a failure once training has started leaves a ``failed``
    one (:func:`record_failure`)."""
    plan = validate(cfg)
    prepare_places(plan)
    with nullcontext() if plan.smoke else RunLock(plan.paths.ckpt, plan.label):
        existing = existing_record(plan)
        if existing is not None and cfg.on_existing != "overwrite":
            return reuse_existing(plan, existing)
        record = train_and_evaluate(plan)
    print_result_table(record)
    return float(record["best_val_acc"]) if record["best_val_acc"] is not None else float("nan")


def train_and_evaluate(plan: RunPlan) -> dict[str, Any]:
    """:func:`build_run` → :func:`fit` → :func:`evaluate` → :func:`write_record`; a failure once
    training has started is recorded (:func:`record_failure`) and re-raised. A completed record is
    replaced only with ``on_existing=overwrite`` (one that appeared meanwhile is not)."""
    built = build_run(plan)
    record = new_record(plan)
    # a run that resumes its last.ckpt continues the record of its earlier stints (bioreg.launch.stints)
    carry_stints(record, None if plan.smoke else plan.store.load(plan.name, plan.key, plan.seed),
                 resuming=not plan.smoke and (plan.paths.ckpt / "last.ckpt").is_file())
    t0 = time.time()
    try:
        fit(built, plan)
        record.update(evaluate(built, plan))
    except BaseException as e:
        record_failure(record, e, t0, plan, built.trainer)
        raise
    write_record(record, t0, plan, overwrite=plan.cfg.on_existing == "overwrite")
    return record


def validate(cfg: DictConfig) -> RunPlan:
    """Stage 1: check the config (keys, types, ranges) and fix the run's identity and places."""
    validate_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    key = config_key(resolved)
    paths = RunPaths(cfg, key)
    return RunPlan(cfg=cfg, resolved=resolved, key=key, name=str(cfg.name), seed=int(cfg.seed),
                   smoke=bool(cfg.trainer.get("fast_dev_run")), paths=paths, store=RecordStore(paths.results))


_PLACE_FIX = {
    "results_dir": "choose a writable folder with results_dir=<folder> (or BIOREG_RESULTS_DIR)",
    "ckpt_dir": "choose a writable folder with ckpt_dir=<folder> (or BIOREG_CKPT_DIR)",
    "the Hydra run dir": "choose a writable folder with hydra.run.dir=<folder>",
    "hydra.run.dir": "choose a writable folder with hydra.run.dir=<folder>",
    "hydra.sweep.dir": "choose a writable folder with hydra.sweep.dir=<folder>",
}


def prepare_places(plan: RunPlan) -> None:
    """Stage 2: every folder the run will write (its record folder under ``results_dir``, its
    checkpoint folder, the Hydra run dir) must be writable now, not after hours of training."""
    places = [("the Hydra run dir", plan.paths.run_dir), ("ckpt_dir", plan.paths.ckpt)]
    if not plan.smoke:
        places.insert(0, ("results_dir", plan.store.path(plan.name, plan.key, plan.seed).parent))
    for what, folder in places:
        probe_writable(folder, what)


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder`` (or, if it does not exist yet, in its nearest existing
    ancestor, so that the probe itself creates no folders); a failure is a :class:`ConfigError`."""
    place = Path(folder)
    while not place.exists() and place.parent != place:
        place = place.parent
    try:
        if not place.is_dir():
            raise NotADirectoryError(20, "not a directory", str(place))
        fd, tmp = tempfile.mkstemp(prefix=".bioreg-write-probe-", dir=place)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(f"{what} is not writable: cannot write in {place} ({e.strerror or e}); "
                          f"{_PLACE_FIX.get(what, 'choose a writable folder')}") from None


def existing_record(plan: RunPlan) -> dict | None:
    """Stage 3: the completed record of this run, if any. A record file that does not parse (a
    truncated or foreign file) does not count as done: it is moved aside and the run proceeds."""
    if plan.smoke:
        return None
    path = plan.store.path(plan.name, plan.key, plan.seed)
    rec = plan.store.load(plan.name, plan.key, plan.seed)
    if rec is not None and rec.get("status") == UNREADABLE:
        moved = move_aside(path)
        log.warning("%s is unreadable (%s): moved aside to %s; the run is not done and runs now", path,
                    " ".join(rec["error"].split())[:120], moved.name)
        return None
    return rec if rec and rec.get("status") == "completed" else None


def reuse_existing(plan: RunPlan, existing: dict) -> float:
    """A completed record exists: skip (adding evaluators it lacks) or refuse (``on_existing``)."""
    store, cfg = plan.store, plan.cfg
    where = store.path(plan.name, plan.key, plan.seed)
    if cfg.on_existing == "error":
        raise ConfigError(f"{plan.name} seed {plan.seed} already has a record at {where} "
                          "(on_existing=error); use on_existing=skip or on_existing=overwrite")
    log.info("skip: %s seed %d already has a completed record (%s)", plan.name, plan.seed, where)
    _add_missing_evaluators(cfg, existing, store, plan.paths)
    return float(existing.get("best_val_acc") or float("nan"))


def build_run(plan: RunPlan) -> Built:
    """Stage 4: seed, build data module, model (and fine-tuning weights), evaluators and trainer.
    Everything that can be wrong with the config or the data fails here, before training."""
    import lightning as L

    cfg = plan.cfg
    # seed everything, workers too. `seed=0` is a real seed: never test it for truthiness
    L.seed_everything(plan.seed, workers=True)
    if cfg.trainer.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dm, lit = build(cfg)
    dm.prepare_data()
    dm.setup("fit")
    # fail before training, not after, when a test set is missing (e.g. CIFAR-10-C not downloaded)
    dm.eval_sets(list(cfg.eval.suites))
    # and when an evaluator is misconfigured: build them now, call them after training
    evaluators = {n: instantiate(e) for n, e in (cfg.eval.get("evaluators") or {}).items() if e is not None}
    trainer_kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    # trainer.channels_last / trainer.compile are ours, not Lightning's
    configure_performance(lit, trainer_kw.pop("channels_last", False), trainer_kw.pop("compile", False))
    trainer = L.Trainer(
        **trainer_kw, default_root_dir=str(plan.paths.run_dir),
        callbacks=_callbacks(cfg, plan.paths), logger=_loggers(cfg, plan.paths) or False,
        plugins=[AtomicCheckpointIO(), *_slurm_plugins()],
    )
    return Built(dm=dm, lit=lit, evaluators=evaluators, trainer=trainer)


def new_record(plan: RunPlan) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION, "name": plan.name, "seed": plan.seed, "config_key": plan.key,
        "status": "running", "protocol": protocol_of_config(plan.resolved), "config": plan.resolved,
        "git": git_info(Path(__file__).parent),
        "versions": package_versions(), "started": utc_now(), "run_dir": str(plan.paths.run_dir),
        "ckpt_dir": str(plan.paths.ckpt), "overrides": task_overrides(),
    }


def fit(built: Built, plan: RunPlan) -> None:
    """Stage 5: train, resuming from the run's ``last.ckpt`` (checked first, see
    :func:`bioreg.app.ckpt_io.resume_point`); checkpoints are read with ``weights_only=True``."""
    resume = None if plan.smoke else resume_point(plan.paths.ckpt)
    if resume is not None:
        log.info("resuming from %s", resume)
    built.trainer.fit(built.lit, datamodule=built.dm, ckpt_path=str(resume) if resume else None,
                      weights_only=True)


def evaluate(built: Built, plan: RunPlan) -> dict[str, Any]:
    """Stage 6: reload the best checkpoint, evaluate on every test set and run the evaluators;
    returns the record fields of a completed run."""
    from bioreg.evaluate.core import EvalContext, evaluate_loader, evaluate_sets, summarize

    cfg, trainer, lit, dm = plan.cfg, built.trainer, built.lit, built.dm
    best_epoch, best_val = reload_best(built)
    device = torch.device("cuda" if torch.cuda.is_available()
                          and cfg.trainer.accelerator in ("auto", "gpu", "cuda") else "cpu")
    model = lit.model.to(device).eval()
    metrics = evaluate_sets(model, dm, cfg.eval.suites, device, progress=bool(cfg.eval.progress))
    train_metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                     if k.startswith("train/")}
    for cb in trainer.callbacks:  # Table 3.1's running train accuracy at the selected and the last epoch
        train_metrics.update(getattr(cb, "train_fields", lambda _e: {})(best_epoch))
    if cfg.eval.get("train_acc"):
        train_metrics["eval_acc"] = evaluate_loader(model, dm.eval_dataloader(dm.train_eval_set()),
                                                    device)["acc"]
    summary = summarize(metrics)
    if "eval_acc" in train_metrics and "test_acc" in summary:  # Singh Table 3.1's overfitting column
        summary["overfitting"] = abs(train_metrics["eval_acc"] - summary["test_acc"])  # both %
    ctx = EvalContext(model=model, datamodule=dm, device=device, metrics=metrics, summary=summary,
                      cfg=plan.resolved, lit=lit, progress=bool(cfg.eval.progress))
    extra: dict[str, Any] = {}
    for cb in trainer.callbacks:  # callbacks may contribute record sections (docs/interfaces.md)
        to_record = getattr(cb, "to_record", None)
        if callable(to_record):
            extra.update(to_record() or {})
    for ev_name, evaluator in built.evaluators.items():
        log.info("evaluator %s", ev_name)
        extra[ev_name] = evaluator(ctx)
    return {
        "status": "completed", "device": _device_name(device), "best_epoch": best_epoch,
        "best_val_acc": best_val if best_val is None else 100.0 * best_val, "train": train_metrics,
        "metrics": metrics, "summary": summary, "extra": extra,
    }


def reload_best(built: Built) -> tuple[int, float | None]:
    """Put the best validation checkpoint's weights into the model (:func:`load_for_eval`); returns
    its epoch and validation accuracy (fraction). Without one (fast_dev_run, no validation) the final
    weights stay."""
    trainer = built.trainer
    ckpt_cb = trainer.checkpoint_callback
    best_path = getattr(ckpt_cb, "best_model_path", "") or ""
    if best_path and Path(best_path).exists():
        best_epoch = int(load_for_eval(built.lit, best_path).get("epoch", -1))
    else:
        best_epoch = int(trainer.current_epoch) - 1
    score = getattr(ckpt_cb, "best_model_score", None)
    return best_epoch, (float(score) if score is not None else None)


def record_failure(record: dict, e: BaseException, t0: float, plan: RunPlan, trainer: Any = None) -> None:
    """Training had started and stopped: write an honest record (not for a user error, which leaves
    none): ``requeued`` or ``interrupted`` for a stop by a signal that the next launch resumes,
    ``failed`` otherwise (:func:`bioreg.launch.stints.stop_status`), with the signal, stage, epoch and
    batch of the stop (:func:`bioreg.lit.failure.describe_failure`). A SIGTERM (Lightning's
    ``SIGTERMException``, a ``SystemExit(None)``) becomes exit status 143 so that a killed run does
    not look successful."""
    if isinstance(e, UserError):  # a mistake in the config or data, not a failed run: no record
        return
    from bioreg.lit.failure import describe_failure

    record.update(
        {"status": stop_status(e), **describe_failure(e, trainer), "traceback": traceback.format_exc()})
    write_record(record, t0, plan, overwrite=True)
    if type(e).__name__ == "SIGTERMException":
        raise SystemExit(128 + 15) from e  # 143 = SIGTERM


def _add_missing_evaluators(cfg: DictConfig, existing: dict, store: RecordStore, paths: RunPaths) -> None:
    """A completed run launched again with evaluators its record lacks (say ``eval=attacks`` after a
    ``eval=default`` run): ``eval`` is not part of the run's identity, so rather than retraining,
    run just the missing evaluators on the run's best checkpoint and add their sections."""
    wanted = {n: OmegaConf.to_container(e, resolve=True)
              for n, e in (cfg.eval.get("evaluators") or {}).items()
              if e is not None}
    missing = {n: e for n, e in wanted.items() if n not in (existing.get("extra") or {})}
    if not missing:
        return
    ckpt = Path(existing.get("ckpt_dir") or paths.ckpt) / "best.ckpt"
    if not ckpt.is_file():
        log.warning(
            "the record lacks evaluators %s but %s is gone: rerun with on_existing=overwrite to retrain",
            ", ".join(missing), ckpt)
        return
    log.info("adding evaluators %s to the existing record from %s", ", ".join(missing), ckpt)
    sections = evaluate_checkpoint(existing["config"], ckpt, missing, record=existing,
                                   progress=bool(cfg.eval.progress),
                                   provenance={"added_by": "train.py (rerun)"})
    add_sections(
        record_files(store.path(existing["name"], existing["config_key"], existing["seed"]), existing),
        sections)


def write_record(record: dict, t0: float, plan: RunPlan, overwrite: bool) -> None:
    """Stage 7: write the record to the run dir and (not for a fast_dev_run) to the ``results_dir``
    store. Lightning's fast_dev_run is a smoke test: its record (``smoke: true``) stays out of the
    store, so its numbers never reach a table."""
    from bioreg.io import atomic_write_json

    store, paths = plan.store, plan.paths
    close_stint(record, t0)  # finished, stints, wall_time_s (the sum of every stint)
    if plan.smoke:
        record["smoke"] = True
    atomic_write_json(paths.run_dir / "record.json", record)  # first: kept even if results_dir fails now
    if plan.smoke:
        log.info("fast_dev_run: record written only to %s (not to results_dir)",
                 paths.run_dir / "record.json")
    elif record["status"] != "completed" and store.completed(record["name"], record["config_key"],
                                                             record["seed"]):
        log.error("run %s; the existing completed record is kept", record["status"])
    else:
        p = store.write(record, overwrite=overwrite)
        log.info("record written: %s", p)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _slurm_plugins() -> list:
    """Under SLURM, Lightning must not requeue on its own: the launcher owns requeueing."""
    if "SLURM_JOB_ID" not in os.environ:
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def print_result_table(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{record['name']} (seed {record['seed']}) — accuracy %")
    t.add_column("test set")
    t.add_column("acc", justify="right")
    s = record.get("summary", {})
    if "test_acc" in s:
        t.add_row("test", f"{s['test_acc']:.2f}")
    for k, v in s.get("occlusion_acc", {}).items():
        t.add_row(f"occlusion/{k}", f"{v:.2f}")
    for k, v in s.get("corruption_acc", {}).items():
        t.add_row(f"corruption/{k} (mean of severities)", f"{v:.2f}")
    if "corruption_mean_acc" in s:
        t.add_row("corruption mean", f"{s['corruption_mean_acc']:.2f}")
    Console().print(t)
