"""One training run, end to end: config → instantiate → LitClassifier → Trainer → evaluate → record.

``train.py`` hands the composed Hydra config to :func:`run`, which returns the
monitored metric (best validation accuracy, %) so that sweepers can use it.

Fault tolerance: checkpoints go to a directory fixed by the run's identity
(``<ckpt_dir>/<name>/<config_key>/seed<k>/``), independent of Hydra's dated
output folder and of any SLURM job id, and ``fit`` resumes from ``last.ckpt``
there when it exists. A relaunched or requeued run therefore continues where it
stopped; a completed run is skipped (``on_existing=skip``) because its record
exists.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bioreg.config import ConfigError, validate_config
from bioreg.results.records import (
    RECORD_VERSION,
    RecordStore,
    config_key,
    git_info,
    package_versions,
    utc_now,
)

log = logging.getLogger("bioreg")

__all__ = ["run", "build", "RunPaths"]


class RunPaths:
    def __init__(self, cfg: DictConfig, key: str):
        self.results = Path(_abs(cfg.results_dir))
        self.ckpt = Path(_abs(cfg.ckpt_dir)) / str(cfg.name) / key / f"seed{int(cfg.seed)}"
        try:
            from hydra.core.hydra_config import HydraConfig

            self.run_dir = Path(HydraConfig.get().runtime.output_dir)
        except Exception:  # not under Hydra (tests, notebooks)
            self.run_dir = self.ckpt


def _abs(p: str) -> str:
    try:
        from hydra.utils import to_absolute_path

        return to_absolute_path(str(p))
    except Exception:
        return os.path.abspath(str(p))


def build(cfg: DictConfig):
    """Instantiate datamodule and LitClassifier from a composed config (no training)."""
    from hydra.utils import instantiate

    from bioreg.lit.module import LitClassifier

    dm = instantiate(cfg.data, _convert_="all")
    net = instantiate(cfg.model, _convert_="all")
    if cfg.get("ckpt"):
        load_net_weights(net, _abs(cfg.ckpt))
    lit = LitClassifier(
        net=net, mean=dm.mean, std=dm.std,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        reg=OmegaConf.to_container(cfg.reg, resolve=True) if cfg.get("reg") is not None else None,
        input_shape=tuple(dm.input_shape),
    )
    return dm, lit


def load_net_weights(net: torch.nn.Module, path: str) -> None:
    """Load the network weights of a bioreg checkpoint (or a plain state_dict) into ``net``.

    Inserted regularizers of the checkpoint are dropped: the new run places its
    own (this is how a trained model gets a push-pull first layer, say).
    """
    if not Path(path).is_file():
        raise ConfigError(f"ckpt={path!r}: no such file (give a .ckpt written by a bioreg run, e.g. its best.ckpt)")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    sd = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    prefix = "model.net." if any(k.startswith("model.net.") for k in sd) else ""
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    own = {k: v for k, v in own.items() if not k.startswith("regularizers.")}
    missing, unexpected = net.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"ckpt={path!r} does not fit model {type(net).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def _callbacks(cfg: DictConfig, paths: RunPaths):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from bioreg.resume import RNGStateCheckpoint

    cbs: list[Any] = [
        ModelCheckpoint(dirpath=paths.ckpt, filename="best", monitor="val/acc", mode="max", save_top_k=1,
                        auto_insert_metric_name=False),
        # last.ckpt after *every* epoch (Lightning >= 2.5 writes `save_last` only when the monitored
        # checkpoint is written too, i.e. when val/acc improved): what a relaunched run resumes from
        ModelCheckpoint(dirpath=paths.ckpt, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                        enable_version_counter=False, auto_insert_metric_name=False),
        RNGStateCheckpoint(),  # a resumed run continues the RNG streams of the interrupted one (bit-exact)
    ]
    if cfg.trainer.get("enable_progress_bar", True):
        cbs.append(RichProgressBar(leave=True))
    if cfg.logger.get("csv", True) or cfg.logger.get("wandb"):
        cbs.append(LearningRateMonitor(logging_interval="epoch"))
    for name, entry in (cfg.get("callbacks") or {}).items():
        if entry is not None:
            try:
                cbs.append(instantiate(entry, _convert_="all"))
            except InstantiationException as e:  # a bad callback parameter is a config mistake, not a failed run
                from bioreg.cli import USER_ERRORS

                if isinstance(e.__cause__, USER_ERRORS):
                    raise e.__cause__ from None
                raise
            log.info("callback %s: %s", name, entry._target_)
    return cbs


def _loggers(cfg: DictConfig, paths: RunPaths):
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = []
    if cfg.logger.get("csv", True):
        loggers.append(CSVLogger(save_dir=str(paths.run_dir), name="csv", version=""))
    wb = cfg.logger.get("wandb")
    if wb:
        try:
            from lightning.pytorch.loggers import WandbLogger
        except ImportError as e:  # pragma: no cover
            raise ConfigError("logger=wandb needs the wandb package (uv sync installs it)") from e
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


def run(cfg: DictConfig) -> float:
    """Train, evaluate and record one run; returns the best validation accuracy (%)."""
    import lightning as L

    from bioreg.evaluate.core import EvalContext, evaluate_loader, evaluate_sets, summarize

    validate_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    key = config_key(resolved)
    paths = RunPaths(cfg, key)
    store = RecordStore(paths.results)
    name, seed = str(cfg.name), int(cfg.seed)

    smoke = bool(cfg.trainer.get("fast_dev_run"))
    existing = None if smoke else store.completed(name, key, seed)
    if existing is not None:
        if cfg.on_existing == "skip":
            log.info("skip: %s seed %d already has a completed record (%s)", name, seed, store.path(name, key, seed))
            _add_missing_evaluators(cfg, existing, store, paths)
            return float(existing.get("best_val_acc") or float("nan"))
        if cfg.on_existing == "error":
            raise ConfigError(f"{name} seed {seed} already has a record at {store.path(name, key, seed)} "
                              "(on_existing=error); use on_existing=skip or on_existing=overwrite")

    # seed everything, workers too. `seed=0` is a real seed: never test it for truthiness
    # (validate_config has checked that it is an int).
    L.seed_everything(seed, workers=True)
    if cfg.trainer.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    record: dict[str, Any] = {
        "record_version": RECORD_VERSION, "name": name, "seed": seed, "config_key": key, "status": "running",
        "config": resolved, "git": git_info(Path(__file__).parent), "versions": package_versions(),
        "started": utc_now(), "run_dir": str(paths.run_dir), "ckpt_dir": str(paths.ckpt),
    }
    t0 = time.time()
    try:
        dm, lit = build(cfg)
        dm.prepare_data()
        dm.setup("fit")
        # fail before training, not after, when a test set is missing (e.g. CIFAR-10-C not downloaded)
        dm.eval_sets(list(cfg.eval.suites))
        # and when an evaluator is misconfigured: build them now, call them after training
        from hydra.utils import instantiate

        evaluators = {n: instantiate(e, _convert_="all") for n, e in (cfg.eval.get("evaluators") or {}).items()
                      if e is not None}

        trainer_kw = OmegaConf.to_container(cfg.trainer, resolve=True)
        trainer = L.Trainer(
            **trainer_kw, default_root_dir=str(paths.run_dir), callbacks=_callbacks(cfg, paths),
            logger=_loggers(cfg, paths) or False, plugins=_slurm_plugins(),
        )
        last = paths.ckpt / "last.ckpt"
        resume = str(last) if last.exists() and not trainer_kw.get("fast_dev_run") else None
        if resume:
            log.info("resuming from %s", resume)
        trainer.fit(lit, datamodule=dm, ckpt_path=resume)

        ckpt_cb = trainer.checkpoint_callback
        best_path = getattr(ckpt_cb, "best_model_path", "") or ""
        if best_path and Path(best_path).exists():
            state = torch.load(best_path, map_location="cpu", weights_only=False)
            lit.load_state_dict(state["state_dict"])
            best_epoch = int(state.get("epoch", -1))
        else:  # fast_dev_run or no validation: evaluate the final weights
            best_epoch = int(trainer.current_epoch) - 1
        best_val = float(ckpt_cb.best_model_score) if getattr(ckpt_cb, "best_model_score", None) is not None else None

        device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda") else "cpu")
        model = lit.model.to(device).eval()
        metrics = evaluate_sets(model, dm, cfg.eval.suites, device, progress=bool(cfg.eval.progress))
        train_metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        if cfg.eval.get("train_acc"):
            train_metrics["eval_acc"] = evaluate_loader(model, dm.eval_dataloader(dm.train_eval_set()), device)["acc"]
        summary = summarize(metrics)
        if "eval_acc" in train_metrics and "test_acc" in summary:  # Singh Table 3.1's overfitting column
            summary["overfitting"] = abs(train_metrics["eval_acc"] - summary["test_acc"])  # both %
        ctx = EvalContext(model=model, datamodule=dm, device=device, metrics=metrics, summary=summary,
                          cfg=resolved, lit=lit, progress=bool(cfg.eval.progress))
        extra: dict[str, Any] = {}
        for cb in trainer.callbacks:  # callbacks may contribute record sections (docs/interfaces.md)
            to_record = getattr(cb, "to_record", None)
            if callable(to_record):
                extra.update(to_record() or {})
        for ev_name, evaluator in evaluators.items():
            log.info("evaluator %s", ev_name)
            extra[ev_name] = evaluator(ctx)
        record.update({
            "status": "completed", "device": _device_name(device), "best_epoch": best_epoch,
            "best_val_acc": best_val if best_val is None else 100.0 * best_val, "train": train_metrics,
            "metrics": metrics, "summary": summary, "extra": extra,
        })
    except BaseException as e:
        from bioreg.cli import USER_ERRORS

        if isinstance(e, USER_ERRORS):  # a mistake in the config or data, not a failed run: no record
            raise
        record.update({"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        _write(record, t0, store, paths, overwrite=True, index=not smoke)
        if type(e).__name__ == "SIGTERMException":  # Lightning's is SystemExit(None), i.e. exit status 0:
            raise SystemExit(128 + 15) from e  # a killed run must not look successful (143 = SIGTERM)
        raise
    _write(record, t0, store, paths, overwrite=cfg.on_existing == "overwrite" or existing is None, index=not smoke)
    print_result_table(record)
    return float(record["best_val_acc"]) if record["best_val_acc"] is not None else float("nan")


def _add_missing_evaluators(cfg: DictConfig, existing: dict, store: RecordStore, paths: RunPaths) -> None:
    """A completed run launched again with evaluators its record lacks (say ``eval=attacks`` after a
    ``eval=default`` run): ``eval`` is not part of the run's identity, so rather than retraining,
    run just the missing evaluators on the run's best checkpoint and add their sections."""
    from bioreg.evaluate.checkpoint import add_sections, evaluate_checkpoint, record_files

    wanted = {n: OmegaConf.to_container(e, resolve=True) for n, e in (cfg.eval.get("evaluators") or {}).items()
              if e is not None}
    missing = {n: e for n, e in wanted.items() if n not in (existing.get("extra") or {})}
    if not missing:
        return
    ckpt = Path(existing.get("ckpt_dir") or paths.ckpt) / "best.ckpt"
    if not ckpt.is_file():
        log.warning("the record lacks evaluators %s but %s is gone: rerun with on_existing=overwrite to retrain",
                    ", ".join(missing), ckpt)
        return
    log.info("adding evaluators %s to the existing record from %s", ", ".join(missing), ckpt)
    sections = evaluate_checkpoint(existing["config"], ckpt, missing, record=existing,
                                   progress=bool(cfg.eval.progress), provenance={"added_by": "train.py (rerun)"})
    add_sections(record_files(store.path(existing["name"], existing["config_key"], existing["seed"]), existing),
                 sections)


def _write(record: dict, t0: float, store: RecordStore, paths: RunPaths, overwrite: bool, index: bool = True) -> None:
    """Write the record to the run dir and, with ``index``, to the ``results_dir`` store. Lightning's
    fast_dev_run is a smoke test: its record (``smoke: true``) stays out of the store, so its numbers
    never reach a table."""
    from bioreg.results.io import atomic_write_json

    record["finished"] = utc_now()
    record["wall_time_s"] = round(time.time() - t0, 3)
    if not index:
        record["smoke"] = True
        log.info("fast_dev_run: record written only to %s (not to results_dir)", paths.run_dir / "record.json")
    elif record["status"] == "failed" and store.completed(record["name"], record["config_key"], record["seed"]):
        log.error("run failed; the existing completed record is kept")
    else:
        p = store.write(record, overwrite=overwrite)
        log.info("record written: %s", p)
    atomic_write_json(paths.run_dir / "record.json", record)


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
