"""Fisher-Rao norm (Liang et al. 2019; Singh 2023 §1.4.1, §2.3.3, Table 3.6).

    ‖θ‖²_fr = θᵀ I(θ) θ,   I(θ) = E_{x,y}[∇θ ℓ(f_θ(x), y) ∇θ ℓ(f_θ(x), y)ᵀ]

so ‖θ‖²_fr = E[(θ · ∇θ ℓ)²]: the mean over examples of the squared derivative of the loss along
the parameter vector itself. I(θ) is never formed. For cross-entropy, with logits z = f_θ(x) and
p = softmax(z),

    θ · ∇θ ℓ(x, y) = (p − e_y) · dz,   dz = θ · ∇θ z = d/dt f_{θ + tθ}(x) |_{t=0},

and dz for a whole batch is one forward-mode pass (``torch.func.jvp`` of the batched logits along
the tangent θ; ``method="jvp"``) or, for layers without forward-mode support, two reverse passes
(the double-backward trick; ``method="double_backward"``). ``method="auto"`` tries jvp first.
The network is in eval mode, so BatchNorm uses its running statistics (examples stay
independent) and stochastic regularizers are the identity.

Labels (the thesis writes E_{x,y} with the loss on (x, y) and does not say which y):

* ``data`` (default): the data labels — the *empirical* Fisher, the reading of the thesis' formula;
* ``model``: y drawn from the model's own predictive distribution p(·|x) (the Fisher information
  proper, Liang et al. 2019); the expectation over y is taken exactly,
  E_{y∼p}[((p − e_y)·dz)²] = Σ_c p_c dz_c² − (p·dz)², so no sampling noise.

Parameters θ: ``all`` (default; every trainable tensor: weights, biases, BatchNorm affine — "θ the
parameters of the model") or ``weights`` (only the ``weight`` of convolution and linear layers).
A weight followed by BatchNorm is *not* scale-invariant here: BatchNorm in eval mode divides by its
fixed running statistics, so scaling the weight scales the normalised output and the weight's own
share W·∇W ℓ of θ·∇θ ℓ is in general non-zero (it is zero only with batch statistics, i.e. in training
mode, where BN(αWx) = BN(Wx)). The evaluator always runs in eval mode, so every weight counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bioreg.evaluate.errors import EvaluatorConfigError

log = logging.getLogger("bioreg")

__all__ = ["FisherRaoEvaluator", "fisher_rao_terms", "select_params", "LABELS", "PARAMS", "METHODS", "SPLITS"]

LABELS = ("data", "model")
PARAMS = ("all", "weights")
METHODS = ("auto", "jvp", "double_backward")
SPLITS = ("test", "train")


def select_params(model: nn.Module, params: str = "all") -> list[str]:
    """Names (as in ``model.named_parameters()``) of the parameters that make up θ."""
    if params not in PARAMS:
        raise EvaluatorConfigError(f"params={params!r}; choose one of {', '.join(PARAMS)}")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if params == "all":
        return trainable
    weights = set()
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear) and getattr(m, "weight", None) is not None:
            weights.add(f"{mname}.weight" if mname else "weight")
    return [n for n in trainable if n in weights]


def _logit_directional(model: nn.Module, x: torch.Tensor, names: Iterable[str], method: str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits z and dz = d/dt f_{θ + t·θ_sel}(x) at t = 0, both (B, C)."""
    names = set(names)
    if method == "jvp":
        from torch.func import functional_call, jvp

        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = dict(model.named_buffers())
        tangents = {n: (p if n in names else torch.zeros_like(p)) for n, p in params.items()}

        def f(ps):
            return functional_call(model, (ps, buffers), (x,))

        z, dz = jvp(f, (params,), (tangents,))
        return z.detach(), dz.detach()
    # double backward: g(u) = Σ u_bc ∇θ z_bc, s(u) = θ·g(u) is linear in u, ∂s/∂u_bc = θ·∇θ z_bc
    ps = [p for n, p in model.named_parameters() if n in names]
    with torch.enable_grad():
        z = model(x)
        u = torch.zeros_like(z, requires_grad=True)
        gs = torch.autograd.grad(z, ps, grad_outputs=u, create_graph=True, allow_unused=True)
        s = sum((g * p.detach()).sum() for g, p in zip(gs, ps, strict=True) if g is not None)
        if not torch.is_tensor(s) or not s.requires_grad:
            return z.detach(), torch.zeros_like(z)
        (dz,) = torch.autograd.grad(s, u)
    return z.detach(), dz.detach()


def fisher_rao_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *, labels: str = "data",
                     params: str = "all", method: str = "auto") -> torch.Tensor:
    """Per-example (θ · ∇θ ℓ)² (``labels="data"``) or its expectation over y ∼ p(·|x) (``"model"``), (B,)."""
    return _terms(model, x, y, labels=labels, params=params, method=method)[0]


def _terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *, labels: str, params: str, method: str
           ) -> tuple[torch.Tensor, str]:
    if labels not in LABELS:
        raise EvaluatorConfigError(f"labels={labels!r}; choose one of {', '.join(LABELS)}")
    if method not in METHODS:
        raise EvaluatorConfigError(f"method={method!r}; choose one of {', '.join(METHODS)}")
    names = select_params(model, params)
    used = method
    if method == "auto":
        try:
            z, dz = _logit_directional(model, x, names, "jvp")
            used = "jvp"
        except (RuntimeError, NotImplementedError) as e:  # an op without forward-mode AD
            log.warning("fisher_rao: jvp failed (%s); using the double-backward method",
                        str(e).splitlines()[0])
            z, dz = _logit_directional(model, x, names, "double_backward")
            used = "double_backward"
    else:
        z, dz = _logit_directional(model, x, names, method)
    z, dz = z.double(), dz.double()
    p = F.softmax(z, dim=1)
    pdz = (p * dz).sum(1)
    if labels == "data":
        if y is None:
            raise EvaluatorConfigError("labels='data' needs the labels y")
        g = pdz - dz.gather(1, y.view(-1, 1).long()).squeeze(1)  # (p - e_y)·dz
        return g * g, used
    return (p * dz * dz).sum(1) - pdz * pdz, used  # Var_{c∼p}(dz_c)


class FisherRaoEvaluator:
    """Fisher-Rao norm θᵀ I(θ) θ of the trained model (Table 3.6), averaged over ``n`` images.

    Args:
        n: number of images (the first ``n`` of the split); ``None`` = the whole split.
        batch_size: images per forward-mode pass.
        labels: ``data`` (empirical Fisher, default) or ``model`` (exact expectation over the
            model's predictive distribution).
        params: ``all`` (default) or ``weights`` (conv/linear weights only).
        split: ``test`` (default) or ``train`` (the training images without augmentation).
        method: ``auto`` | ``jvp`` | ``double_backward``.
        progress: rich progress bar; ``None`` follows ``ctx.progress``.
    """

    def __init__(self, n: int | None = None, batch_size: int = 128, labels: str = "data", params: str = "all",
                 split: str = "test", method: str = "auto", progress: bool | None = None):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise EvaluatorConfigError(f"n must be an integer >= 1 or null (whole split), got {n!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EvaluatorConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for name, v, ok in (("labels", labels, LABELS), ("params", params, PARAMS), ("split", split, SPLITS),
                            ("method", method, METHODS)):
            if v not in ok:
                raise EvaluatorConfigError(f"{name}={v!r}; choose one of {', '.join(ok)}")
        self.n, self.batch_size, self.labels, self.params = n, batch_size, labels, params
        self.split, self.method, self.progress = split, method, progress

    def __call__(self, ctx) -> dict[str, Any]:
        model: nn.Module = ctx.model
        model.eval()
        device = torch.device(ctx.device) if getattr(ctx, "device", None) is not None else torch.device("cpu")
        ds = ctx.datamodule.test_set() if self.split == "test" else ctx.datamodule.train_eval_set()
        n = len(ds) if self.n is None else min(self.n, len(ds))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(n)),
                                             batch_size=self.batch_size,
                                             shuffle=False, num_workers=0, generator=torch.Generator())
        names = select_params(model, self.params)
        n_params = sum(p.numel() for nme, p in model.named_parameters() if nme in set(names))
        show = ctx.progress if self.progress is None else self.progress
        total, total_sq, count = 0.0, 0.0, 0
        used: set[str] = set()
        bar = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("[bold]fisher-rao[/]"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn())
            bar.start()
            task = bar.add_task("", total=len(loader))
        try:
            for x, y in loader:
                t, m = _terms(model, x.float().to(device), torch.as_tensor(y).long().to(device),
                              labels=self.labels, params=self.params, method=self.method)
                used.add(m)
                total += float(t.sum())
                total_sq += float((t * t).sum())
                count += int(t.numel())
                if bar is not None:
                    bar.advance(task)
        finally:
            if bar is not None:
                bar.stop()
        if count == 0:
            raise EvaluatorConfigError(f"fisher_rao: the {self.split} split is empty")
        mean = total / count
        var = max(total_sq / count - mean * mean, 0.0)
        return {
            "value": mean, "sem": math.sqrt(var / count) if count > 1 else None, "n": count,
            "labels": self.labels, "params": self.params, "n_params": int(n_params), "split": self.split,
            "method": self.method, "method_used": sorted(used),
            "definition": "mean over examples of (theta . grad_theta CE)^2 (eval mode)",
        }
