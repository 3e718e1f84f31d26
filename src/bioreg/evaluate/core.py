"""Evaluation of a trained classifier on every test set, and the evaluator interface.

:func:`evaluate_sets` runs the model (eval mode, so every stochastic layer is the
identity) over the sets returned by the datamodule's ``eval_sets(suites)`` —
``test``, ``occlusion/<kind>``, ``corruption/<name>/<severity>`` — and returns
``{set_name: {"acc": percent, "loss": mean CE, "n": count}}``.

Further analyses (adversarial attacks, Fisher-Rao norm, corruption error …)
are *evaluators*: objects configured under ``eval.evaluators`` with a
``_target_``, called once after the standard sets with an
:class:`EvalContext`, returning a JSON-serialisable dict that lands in the run
record under ``extra.<evaluator name>``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EvalContext", "Evaluator", "evaluate_loader", "evaluate_sets", "summarize"]


@dataclass
class EvalContext:
    model: nn.Module  # the Classifier (normalisation inside), in eval mode, on ``device``
    datamodule: Any
    device: torch.device
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    cfg: Mapping[str, Any] = field(default_factory=dict)
    lit: Any = None
    progress: bool = True


class Evaluator(Protocol):
    def __call__(self, ctx: EvalContext) -> dict[str, Any]: ...


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, device: torch.device) -> dict[str, float]:
    model.eval()
    # sums stay on the device (one host read at the end, not two per batch); float64 accumulation of
    # the float32 batch sums is the same arithmetic as adding their Python floats
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    total = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        total += y.numel()
    if total == 0:
        return {"acc": math.nan, "loss": math.nan, "n": 0}
    return {"acc": 100.0 * int(correct) / total, "loss": float(loss_sum) / total, "n": total}


def evaluate_sets(model: nn.Module, datamodule, suites, device: torch.device, progress: bool = True
                  ) -> dict[str, dict[str, float]]:
    sets = datamodule.eval_sets(list(suites))
    out: dict[str, dict[str, float]] = {}
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cols = (TextColumn("[bold]evaluate[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn())
        with Progress(*cols, transient=False) as bar:
            task = bar.add_task("", total=len(sets))
            for name, ds in sets.items():
                bar.update(task, description=name)
                out[name] = evaluate_loader(model, datamodule.eval_dataloader(ds), device)
                bar.advance(task)
    else:
        for name, ds in sets.items():
            out[name] = evaluate_loader(model, datamodule.eval_dataloader(ds), device)
    return out


def summarize(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Derived numbers: clean accuracy, occlusion accuracies, per-corruption means over severities."""
    s: dict[str, Any] = {}
    if "test" in metrics:
        s["test_acc"] = metrics["test"]["acc"]
    occl = {k.split("/", 1)[1]: v["acc"] for k, v in metrics.items() if k.startswith("occlusion/")}
    if occl:
        s["occlusion_acc"] = occl
    per: dict[str, list[float]] = defaultdict(list)
    for k, v in metrics.items():
        if k.startswith("corruption/"):
            _, name, _sev = k.split("/")
            per[name].append(v["acc"])
    if per:
        means = {c: sum(a) / len(a) for c, a in per.items()}
        s["corruption_acc"] = means
        s["corruption_mean_acc"] = sum(means.values()) / len(means)
    return s
