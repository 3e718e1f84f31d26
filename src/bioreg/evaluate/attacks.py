"""Adversarial robustness (Singh 2023, §1.3, §2.3.2, Tables 3.4-3.5) and its gradient-masking checks.

Threat model. Inputs are images in [0, 1]; the normalisation is part of the model (``ctx.model`` is
the :class:`~bioreg.lit.module.Classifier`), so ε is measured in pixel units, as in the thesis
(ε = 8/255). The model is in ``eval()`` mode: every stochastic regularizer is the identity, so
the gradients are deterministic (§2.3.1: "we always remove the probabilistic layers during
inference ... so as to avoid gradient hacking").

Attacks (names used in ``attacks=[...]`` and in the record):

====================  =====  =====================================================================
name                  norm   definition
====================  =====  =====================================================================
``fgsm``              L∞     x + ε·sign(∇ₓ CE(f(x), y)), clipped to [0, 1] (§1.3.2; Goodfellow 2014)
``pgd_ce``            L∞     untargeted PGD on CE, ε = 8/255, step 3/255, 10 steps, random start
``pgd_t``             L∞     targeted PGD (descends CE to the target t = (y + 1) mod C)
``square``            L∞     Square attack (Andriushchenko 2020), margin loss, query budget
``pgd_ce_l2``         L2     untargeted PGD, ε = 0.5, step 0.125, 10 steps, random start
``pgd_t_l2``          L2     targeted PGD, same settings, t = (y + 1) mod C
====================  =====  =====================================================================

FGSM, PGD (L∞ and L2) and Square are the ``torchattacks`` implementations (their update rules were
checked against the definitions above; see ``docs/decisions/attacks.md``), wrapped so that each
batch is seeded on its own (results do not depend on the batch order or on which other attacks
ran) and the global RNG is left untouched. The random-noise baseline of the gradient-masking
report is our own (torchattacks has no bounded-noise attack).

Every accuracy is over the first ``n`` test images (the authors attacked the first 100) and comes
with a 95 % Wilson interval (:mod:`bioreg.evaluate.stats`). A targeted attack reports the accuracy
on the true labels (what the thesis tables show) *and* its success rate against the target class.

Beyond the thesis, the evaluator runs what the five red flags of Athalye et al. (2018, §1.3.6)
need — an ε sweep, an unbounded PGD and random sign noise — and stores the verdicts
(:mod:`bioreg.evaluate.gradient_masking`) under ``red_flags``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from bioreg.errors import require_extra
from bioreg.evaluate.attack_settings import AttackSettings
from bioreg.evaluate.errors import EvaluatorConfigError
from bioreg.evaluate.stats import acc_entry
from bioreg.evaluate.unclipped import fgsm_unclipped, pgd_unclipped

log = logging.getLogger("bioreg")

__all__ = [
    "ATTACKS", "ATTACK_SPECS", "AttackSpec", "AdversarialEvaluator", "fgsm", "pgd", "square", "random_noise",
    "target_labels",
    "batch_seed",
]

_NORMS = ("linf", "l2")


# --------------------------------------------------------------------------------------------
# seeding
# --------------------------------------------------------------------------------------------
def batch_seed(seed: int, tag: str, batch: int) -> int:
    """A 31-bit seed for (run seed, attack tag, batch index), independent of everything else."""
    tag_code = int.from_bytes(tag.encode("utf-8")[:16].ljust(16, b"\0"), "little") % (2**63)
    return int(
        np.random.SeedSequence([int(seed) % (2**63), tag_code, int(batch)]).generate_state(1)[0]) & 0x7FFFFFFF


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Run a block with the torch RNGs (CPU and the CUDA device used) seeded; restore them after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def target_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """PGD-T target: the next class, t = (y + 1) mod C (as in the authors' public code)."""
    return (y + 1) % int(num_classes)


# --------------------------------------------------------------------------------------------
# single attacks on one batch (inputs in [0, 1]; ``model`` maps images to logits)
# --------------------------------------------------------------------------------------------
def _device_of(model: nn.Module, x: torch.Tensor) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return x.device


def _prep(atk, model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None):
    atk.set_device(_device_of(model, x))
    if targets is not None:
        atk.set_mode_targeted_by_label(quiet=True)
    return atk


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         targets: torch.Tensor | None = None) -> torch.Tensor:
    """FGSM (§1.3.2): x + ε·sign(∇ₓ CE(f(x), y)) clipped to [0, 1]; targeted: x − ε·sign(∇ₓ CE(f(x), t))."""
    import torchattacks

    if eps == 0:
        return x.detach().clone()
    atk = _prep(torchattacks.FGSM(model, eps=float(eps)), model, x, targets)
    with torch.enable_grad():
        return atk(x, y if targets is None else targets).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int,
        norm: str = "linf", targets: torch.Tensor | None = None, random_start: bool = True) -> torch.Tensor:
    """PGD (Madry et al. 2017) in L∞ (sign steps, box projection) or L2 (normalised steps, ball projection).

    Untargeted: ascends CE(f(x'), y); targeted: descends CE(f(x'), t). Every iterate is projected
    onto the ε-ball around ``x`` and clipped to [0, 1]. Returns the last iterate.
    """
    import torchattacks

    if eps == 0 or steps == 0:
        return x.detach().clone()
    if norm == "linf":
        atk = torchattacks.PGD(model, eps=float(eps), alpha=float(step), steps=int(steps),
                               random_start=random_start)
    elif norm == "l2":
        atk = torchattacks.PGDL2(model, eps=float(eps), alpha=float(step), steps=int(steps),
                                 random_start=random_start)
    else:
        raise EvaluatorConfigError(f"norm={norm!r} is not supported; choose one of {', '.join(_NORMS)}")
    atk = _prep(atk, model, x, targets)
    with torch.enable_grad():
        return atk(x, y if targets is None else targets).detach()


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, queries: int, seed: int = 0,
           p_init: float = 0.8, norm: str = "linf") -> torch.Tensor:
    """Square attack (Andriushchenko et al. 2020): score-based random search, margin loss, no gradients."""
    import torchattacks

    if eps == 0:
        return x.detach().clone()
    atk = torchattacks.Square(model, norm="Linf" if norm == "linf" else "L2", eps=float(eps),
                              n_queries=int(queries),
                              n_restarts=1, p_init=float(p_init), loss="margin", resc_schedule=True,
                              seed=int(seed))
    atk = _prep(atk, model, x, None)
    with torch.no_grad(), _seeded(int(seed), _device_of(model, x)):  # Square re-seeds the global RNG itself
        return atk(x, y).detach()


@torch.no_grad()
def random_noise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, draws: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random search without any model feedback but the label: ``draws`` random vertices of the L∞
    ε-ball (x + ε·s, s ∈ {−1, 1}ᵈ uniform), clipped to [0, 1]; per example the first draw that is
    misclassified is returned (the last draw if none is)."""
    best = x.clone()
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(int(draws)):
        s = torch.randint(0, 2, x.shape, generator=generator, device="cpu").to(x.device, x.dtype) * 2 - 1
        cand = (x + eps * s).clamp(0.0, 1.0)
        wrong = model(cand).argmax(1) != y
        take = ~found
        best[take] = cand[take]
        found |= wrong
        if bool(found.all()):
            break
    return best


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


# --------------------------------------------------------------------------------------------
# the attack-spec table: one row per attack of the record
# --------------------------------------------------------------------------------------------
# (x batch, y batch, batch seed) -> x_adv
AttackFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """One attack of :class:`AdversarialEvaluator`.

    ``params(evaluator)`` gives its settings once: the attack is run with them (``call``) and the
    record entry shows them, in this order, followed by ``implementation``.
    """

    norm: str  # record section: "linf" | "l2"
    key: str  # key inside the section
    label: str  # progress-bar label
    implementation: str  # torchattacks class
    call: Callable[..., torch.Tensor]  # (model, num_classes, spec, params, xb, yb, seed) -> x_adv
    params: Callable[[Any], dict[str, Any]]
    targeted: bool = False  # target t = (y + 1) mod C; the entry adds target_success


def _targets(spec: AttackSpec, yb: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    return target_labels(yb, num_classes) if spec.targeted else None


def _labels(model: nn.Module, p: dict[str, Any], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """The labels an untargeted attack ascends the loss of: the true ones, or (``labels: predicted``,
    the authors' CleverHans calls without ``y``) the model's clean predictions."""
    if p.get("labels", "true") == "true":
        return yb
    with torch.no_grad():
        return model(xb).argmax(1)


def _call_fgsm(model, num_classes, spec, p, xb, yb, s):
    targets = _targets(spec, yb, num_classes)
    labels = yb if targets is not None else _labels(model, p, xb, yb)
    if p.get("clip", True):
        return fgsm(model, xb, labels, p["eps"], targets=targets)
    return fgsm_unclipped(model, xb, labels, p["eps"], targets=targets)


def _call_pgd(model, num_classes, spec, p, xb, yb, s):
    targets = _targets(spec, yb, num_classes)
    labels = yb if targets is not None else _labels(model, p, xb, yb)
    attack = pgd if p.get("clip", True) else partial(pgd_unclipped, clip=False)
    return attack(model, xb, labels, eps=p["eps"], step=p["step"], steps=p["steps"], norm=spec.norm,
                  targets=targets, random_start=p["random_start"])


def _call_square(model, num_classes, spec, p, xb, yb, s):
    return square(model, xb, yb, eps=p["eps"], queries=p["queries"], seed=s, p_init=p["p_init"],
                  norm=spec.norm)


def _call_noise(model, eps, draws, xb, yb, s):
    return random_noise(model, xb, yb, eps=eps, draws=draws, generator=torch.Generator().manual_seed(s))


def _pgd_linf(ev) -> dict[str, Any]:
    return {"eps": ev.eps_linf, "step": ev.step_linf, "steps": ev.steps, "random_start": ev.random_start,
            "loss": "ce", **ev.reading()}


def _pgd_l2(ev) -> dict[str, Any]:
    return {"eps": ev.eps_l2, "step": ev.step_l2, "steps": ev.steps_l2, "random_start": ev.random_start,
            "loss": "ce", **ev.reading()}


def _fgsm(ev) -> dict[str, Any]:
    return {"eps": ev.eps_linf, "steps": 1, "random_start": False, "loss": "ce", **ev.reading()}


def _square(ev) -> dict[str, Any]:  # always clipped (as AutoAttack's Square), always the true labels
    return {"eps": ev.eps_linf, "queries": ev.square_queries, "p_init": ev.square_p_init, "loss": "margin",
            "restarts": 1}


#: the implementation an entry names when its attack ran without clipping (``clip: false``)
UNCLIPPED = "bioreg.evaluate.unclipped (CleverHans update rule, no clipping)"

#: name (as in ``attacks=[...]``) -> spec, in the order the attacks run and appear in the record; the
#: authors' reading (``labels``, ``clip``) appears in an entry only where it differs from the default
ATTACK_SPECS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("linf", "fgsm", "L∞ FGSM", "FGSM", _call_fgsm, params=_fgsm),
    "pgd_ce": AttackSpec("linf", "pgd_ce", "L∞ PGD-CE", "PGD", _call_pgd, params=_pgd_linf),
    "pgd_t": AttackSpec("linf", "pgd_t", "L∞ PGD-T", "PGD", _call_pgd, params=_pgd_linf, targeted=True),
    "square": AttackSpec("linf", "square", "L∞ Square", "Square", _call_square, params=_square),
    "pgd_ce_l2": AttackSpec("l2", "pgd_ce", "L2 PGD-CE", "PGDL2", _call_pgd, params=_pgd_l2),
    "pgd_t_l2": AttackSpec("l2", "pgd_t", "L2 PGD-T", "PGDL2", _call_pgd, params=_pgd_l2, targeted=True),
}
ATTACKS: tuple[str, ...] = tuple(ATTACK_SPECS)


@dataclass(frozen=True)
class _Job:
    """One pass over the attacked images: predictions land under ``tag``."""

    tag: str
    label: str
    n: int  # attack the first n images
    fn: AttackFn


# --------------------------------------------------------------------------------------------
# the evaluator
# --------------------------------------------------------------------------------------------
class AdversarialEvaluator(AttackSettings):
    """FGSM, PGD-CE, PGD-T and Square in L∞, PGD-CE and PGD-T in L2 (Singh 2023, Tables 3.4-3.5),
    plus the gradient-masking red flags of Athalye et al. (2018) (§1.3.6).

    Its settings, one keyword each, are the fields of
    :class:`~bioreg.evaluate.attack_settings.AttackSettings` (checked there from a spec table);
    ``attacks`` is checked here against :data:`ATTACKS`.
    """

    def __post_init__(self) -> None:
        require_extra("torchattacks", "attacks", "the attacks evaluator (eval=attacks)")
        super().__post_init__()
        attacks = ATTACKS if self.attacks is None else self.attacks
        if isinstance(attacks, str):
            attacks = [attacks]
        bad = [a for a in attacks if a not in ATTACKS]
        if bad:
            raise EvaluatorConfigError(f"unknown attack(s) {bad}; valid choices: {', '.join(ATTACKS)}")
        if not attacks:
            raise EvaluatorConfigError(f"attacks is empty; choose some of {', '.join(ATTACKS)}")
        self.attacks = [a for a in ATTACKS if a in set(attacks)]

    # ---------------------------------------------------------------- helpers
    def _entry(self, k: int, n: int) -> dict:
        return acc_entry(k, n, self.confidence)

    def _load(self, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        ds = ctx.datamodule.test_set()
        total = len(ds)
        n = total if self.n is None else min(self.n, total)
        if self.n is not None and self.n > total:
            log.warning("attacks: n=%d > test set size %d; using all %d", self.n, total, total)
        sub = torch.utils.data.Subset(ds, range(n))
        loader = torch.utils.data.DataLoader(sub, batch_size=max(self.batch_size, 256), shuffle=False,
                                             num_workers=0,
                                             generator=torch.Generator())  # leaves the global RNG alone
        xs, ys = [], []
        for x, y in loader:
            xs.append(x.float())
            ys.append(torch.as_tensor(y).long())
        return torch.cat(xs), torch.cat(ys)

    def _run(self, bar, desc: str, tag: str, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             fn: AttackFn, model: nn.Module) -> torch.Tensor:
        """Attack all of ``x`` batch by batch; returns the predicted labels on the adversarial images."""
        preds = []
        nb = math.ceil(x.shape[0] / self.batch_size)
        task = bar.add_task(desc, total=nb) if bar is not None else None
        for b in range(nb):
            xb = x[b * self.batch_size:(b + 1) * self.batch_size].to(device)
            yb = y[b * self.batch_size:(b + 1) * self.batch_size].to(device)
            s = batch_seed(self.seed, tag, b)
            with _seeded(s, device):
                xa = fn(xb, yb, s)
            with torch.no_grad():
                preds.append(model(xa).argmax(1).cpu())
            if bar is not None:
                bar.advance(task)
        return torch.cat(preds)

    # ---------------------------------------------------------------- main
    def __call__(self, ctx) -> dict[str, Any]:
        model: nn.Module = ctx.model
        device = torch.device(ctx.device) if getattr(ctx, "device", None) is not None else _device_of(
            model, torch.zeros(1))
        model.eval()
        num_classes = int(getattr(ctx.datamodule, "num_classes", 0) or 0)
        x, y = self._load(ctx)
        n = int(x.shape[0])
        if n == 0:
            raise EvaluatorConfigError("attacks: the test set is empty")
        if num_classes < 2:
            with torch.no_grad():
                num_classes = int(model(x[:1].to(device)).shape[1])
        show = ctx.progress if self.progress is None else self.progress
        t0 = time.time()
        clean_pred = _predict(model, x.to(device), self.batch_size).cpu()
        preds: dict[str, torch.Tensor] = {}
        times: dict[str, float] = {}
        with _progress(show) as bar:
            for job in self._jobs(model, num_classes, n):
                ts = time.time()
                preds[job.tag] = self._run(bar, job.label, job.tag, x[:job.n], y[:job.n], device, job.fn,
                                           model)
                times[job.tag] = time.time() - ts
        return self._section(y, clean_pred, preds, times, num_classes, t0)

    def _jobs(self, model: nn.Module, num_classes: int, n: int) -> list[_Job]:
        """What to run, in order: the requested attacks, then (red flags) the ε sweep, the unbounded PGD, the
        noise."""
        jobs = []
        for name in self.attacks:
            spec = ATTACK_SPECS[name]
            jobs.append(
                _Job(name, spec.label, n, partial(spec.call, model, num_classes, spec, spec.params(self))))
        if not self.red_flags:
            return jobs
        eps, st, k = self.eps_linf, self.step_linf, self.steps
        for e in self.eps_sweep:
            if math.isclose(e, eps) and "pgd_ce" in self.attacks:
                continue  # the sweep's ε = eps_linf point is PGD-CE itself
            se = st if math.isclose(e, eps) else (st * e / eps if eps > 0 else st)
            p = {"eps": e, "step": se, "steps": k, "random_start": self.random_start}
            jobs.append(_Job(f"sweep:{e!r}", f"L∞ PGD-CE ε={e * 255:.3g}/255", n,
                             partial(_call_pgd, model, num_classes, ATTACK_SPECS["pgd_ce"], p)))
        ue, us = self.unbounded_eps, self.unbounded_steps
        p = {"eps": ue, "step": 2.5 * ue / us, "steps": us, "random_start": self.random_start}
        jobs.append(_Job("unbounded", f"L∞ PGD-CE ε={ue:g} (unbounded)",
                         n if self.unbounded_n is None else min(n, self.unbounded_n),
                         partial(_call_pgd, model, num_classes, ATTACK_SPECS["pgd_ce"], p)))
        jobs.append(_Job("noise", f"L∞ random noise ({self.noise_draws} draws)", n,
                         partial(_call_noise, model, eps, self.noise_draws)))
        return jobs

    def _section(self, y: torch.Tensor, clean_pred: torch.Tensor, preds: dict[str, torch.Tensor],
                 times: dict[str, float], num_classes: int, t0: float) -> dict[str, Any]:
        """The ``extra.attacks`` record section from the predicted labels of every job."""
        import torchattacks

        n = int(y.shape[0])
        eps = self.eps_linf
        impl = f"torchattacks {getattr(torchattacks, '__version__', '?')}"
        out: dict[str, Any] = {
            "n": n, "subset": f"first {n} test images", "num_classes": num_classes, "seed": self.seed,
            "ci_method": "wilson", "confidence": self.confidence,
            "clean": self._entry(int((clean_pred == y).sum()), n),
        }
        out["linf"], out["l2"] = {}, {}
        for name in self.attacks:
            spec, p = ATTACK_SPECS[name], preds[name]
            e = self._entry(int((p == y).sum()), n)
            e["time_s"] = round(times[name], 3)
            params = spec.params(self)
            if spec.targeted:  # the target comes from the true label whatever `labels` says
                params.pop("labels", None)
            unclipped = params.get("clip", True) is False
            e.update(params, implementation=UNCLIPPED if unclipped else f"{impl} {spec.implementation}")
            if spec.targeted:
                hit = self._entry(int((p == target_labels(y, num_classes)).sum()), n)
                e.update(target="(y + 1) mod num_classes", target_success=hit["acc"],
                         target_success_ci95=hit["ci95"])
            out[spec.norm][spec.key] = e

        if self.red_flags:
            self._red_flag_sections(out, y, clean_pred, preds)
        out["time_s"] = round(time.time() - t0, 3)
        out["settings"] = {
            "eps_linf": eps, "step_linf": self.step_linf, "steps": self.steps, "eps_l2": self.eps_l2,
            "step_l2": self.step_l2, "steps_l2": self.steps_l2, "random_start": self.random_start,
            "square_queries": self.square_queries, "attacks": list(self.attacks),
            "pgd_t_target": "(y + 1) mod num_classes",
            "inputs": "[0, 1], normalisation inside the model, eval mode",
            **self.reading(),
        }
        return out

    def _red_flag_sections(self, out: dict[str, Any], y: torch.Tensor, clean_pred: torch.Tensor,
                           preds: dict[str, torch.Tensor]) -> None:
        """The gradient-masking sections of ``extra.attacks`` (ε sweep, unbounded, noise, random
        search) and the red flags read from them, added to ``out``."""
        from bioreg.evaluate.gradient_masking import evaluate_red_flags

        n, eps = int(y.shape[0]), self.eps_linf
        sweep = [self._entry(int((preds[self._sweep_tag(e, preds)] == y).sum()), n)
                 for e in self.eps_sweep]
        out["eps_sweep"] = {
            "norm": "linf", "attack": "pgd_ce", "steps": self.steps,
            "step_over_eps": self.step_linf / eps if eps > 0 else None,
            "eps": list(self.eps_sweep), "acc": [s["acc"] for s in sweep],
            "ci95": [s["ci95"] for s in sweep],
            "n": n,
        }
        nu = int(preds["unbounded"].shape[0])
        ub = self._entry(int((preds["unbounded"] == y[:nu]).sum()), nu)
        ub.update(eps=self.unbounded_eps, steps=self.unbounded_steps,
                  step=2.5 * self.unbounded_eps / self.unbounded_steps, norm="linf", attack="pgd_ce")
        out["unbounded"] = ub
        nz = self._entry(int((preds["noise"] == y).sum()), n)
        nz.update(eps=eps, draws=self.noise_draws, kind="uniform random vertices of the L∞ ball")
        out["noise"] = nz
        out["random_search"] = _random_search(y, clean_pred, preds)
        out["red_flags"] = evaluate_red_flags(out, rs_tol=self.rs_tol, saturation_acc=self.saturation_acc)

    def _sweep_tag(self, e: float, preds: dict[str, torch.Tensor]) -> str:
        """Which job's predictions are the sweep's point ``e`` (PGD-CE itself at ε = eps_linf when it ran)."""
        return "pgd_ce" if math.isclose(e, self.eps_linf) and "pgd_ce" in preds else f"sweep:{e!r}"


def _random_search(y: torch.Tensor, clean_pred: torch.Tensor,
                   preds: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per example: random search (Square, noise) succeeding where gradients (PGD-CE) failed (red flag 5)."""
    rs: dict[str, Any] = {"n": int(y.shape[0])}
    if "pgd_ce" not in preds:
        return rs
    pgd_ok = preds["pgd_ce"] == y
    noise_hit = (preds["noise"] != y) & pgd_ok & (clean_pred == y)
    rs["noise_only"] = int(noise_hit.sum())
    any_hit = noise_hit.clone()
    if "square" in preds:
        sq_hit = (preds["square"] != y) & pgd_ok & (clean_pred == y)
        rs["square_only"] = int(sq_hit.sum())
        any_hit |= sq_hit
    rs["random_search_only"] = int(any_hit.sum())
    rs["pgd_ce_robust"] = int(pgd_ok.sum())
    return rs


def _progress(show: bool):
    """A rich progress display for the attack batches, or a context that yields ``None``."""
    if not show:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]attack[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=False)
