"""The settings of the adversarial evaluator, one field each, checked from a small spec table.

:class:`AttackSettings` is a dataclass whose fields are the keys of ``eval.evaluators.attacks``
(and of ``attacks_authors``, conf/eval/): the generated ``__init__`` names every key, so a misspelt
one fails at start-up (:mod:`bioreg.config.validate` reads the signature), and each field carries
its check in ``metadata["check"]`` (``check(name, value) -> value``), run by ``__post_init__``.
Checks that involve several fields follow in :meth:`AttackSettings.check_together`.
:class:`bioreg.evaluate.attacks.AdversarialEvaluator` is an ``AttackSettings`` with the attacks.

Two settings exist for the authors' reading of Tables 3.4-3.5 (docs/decisions/protocols.md, item 8):
``labels`` (``true``, the thesis's and bioreg's default, or ``predicted``: FGSM and untargeted PGD
ascend the loss of the model's own clean prediction, as CleverHans does without ``y``) and ``clip``
(``true``: every iterate is clipped to [0, 1]; ``false``: as the authors' CleverHans calls, which
passed no clip bounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from bioreg.evaluate.errors import EvaluatorConfigError

__all__ = ["AttackSettings", "LABELS", "check_nonneg", "check_int"]

#: the labels untargeted attacks ascend the loss of
LABELS = ("true", "predicted")


def check_nonneg(name: str, v: Any) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError) as e:
        raise EvaluatorConfigError(f"{name} must be a number >= 0, got {v!r}") from e
    if not math.isfinite(v) or v < 0:
        raise EvaluatorConfigError(f"{name} must be a finite number >= 0, got {v}")
    return v


def check_int(name: str, v: Any, lo: int, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < lo:
        more = " or null (all)" if allow_none else ""
        raise EvaluatorConfigError(f"{name} must be an integer >= {lo}{more}, got {v!r}")
    return int(v)


def _int(lo: int, none: bool = False) -> dict[str, Callable[[str, Any], Any]]:
    return {"check": lambda name, v: check_int(name, v, lo, none)}


def _nonneg() -> dict[str, Callable[[str, Any], Any]]:
    return {"check": check_nonneg}


def _flag() -> dict[str, Callable[[str, Any], Any]]:
    return {"check": lambda _name, v: bool(v)}


def _choice(*valid: str) -> dict[str, Callable[[str, Any], Any]]:
    def check(name: str, v: Any) -> str:
        if v not in valid:
            raise EvaluatorConfigError(f"{name}={v!r} is invalid; valid: {', '.join(valid)}")
        return str(v)

    return {"check": check}


def _p_init(name: str, v: Any) -> float:
    v = check_nonneg(name, v)
    if not 0 < v <= 1:
        raise EvaluatorConfigError(f"{name} must lie in (0, 1], got {v}")
    return v


def _open_unit(name: str, v: Any) -> float:
    if not 0 < float(v) < 1:
        raise EvaluatorConfigError(f"{name} must lie in (0, 1), got {v}")
    return float(v)


def _eps_list(_name: str, v: Sequence[float]) -> list[float]:
    return sorted({check_nonneg("eps_sweep[]", e) for e in v})


@dataclass
class AttackSettings:
    """What the adversarial evaluator attacks, with which budget, and how it reports.

    Args:
        n: attack the first ``n`` test images (``None``: the whole test set). The authors used 100.
        batch_size: images per attack batch.
        eps_linf, step_linf, steps: L∞ budget, PGD step and iterations (thesis: 8/255, 3/255, 10).
        random_start: PGD starts from a uniform point in the ε-ball (CleverHans' and torchattacks'
            default, Madry et al. 2017). FGSM never does.
        eps_l2, step_l2, steps_l2: L2 PGD (not given in the thesis; 0.5 as RobustBench, step
            2.5·ε/steps = 0.125; ``steps_l2=None`` uses ``steps``).
        square_queries: Square's query budget per image (5000 = AutoAttack's default).
        square_p_init: Square's initial fraction of pixels changed.
        attacks: which of ``fgsm, pgd_ce, pgd_t, square, pgd_ce_l2, pgd_t_l2`` to run (default all).
        red_flags: also run the ε sweep, the unbounded PGD and random noise, and evaluate the five
            red flags (needs ``fgsm``, ``pgd_ce`` and ``square`` for flags 1, 2, 5).
        eps_sweep: ε values (pixel units) of the L∞ PGD-CE sweep (flag 4); step scales as
            ``step_linf/eps_linf``·ε.
        unbounded_eps, unbounded_steps, unbounded_n: the unbounded L∞ PGD-CE of flag 3.
        noise_draws: random sign-noise draws per image for flag 5.
        rs_tol, saturation_acc: thresholds of red flags 5 and 4 (%).
        seed: every random choice (PGD starts, Square, noise) derives from it, per attack and batch.
        confidence: level of the reported intervals (key stays ``ci95``).
        progress: rich progress bars; ``None`` follows ``ctx.progress``.
        labels: ``true`` or ``predicted`` (module docstring).
        clip: clip adversarial images to [0, 1] (module docstring).
    """

    n: int | None = field(default=None, metadata=_int(1, none=True))
    batch_size: int = field(default=256, metadata=_int(1))
    eps_linf: float = field(default=8 / 255, metadata=_nonneg())
    step_linf: float = field(default=3 / 255, metadata=_nonneg())
    steps: int = field(default=10, metadata=_int(1))
    random_start: bool = field(default=True, metadata=_flag())
    eps_l2: float = field(default=0.5, metadata=_nonneg())
    step_l2: float = field(default=0.125, metadata=_nonneg())
    steps_l2: int | None = field(default=None, metadata=_int(1, none=True))
    square_queries: int = field(default=5000, metadata=_int(1))
    square_p_init: float = field(default=0.8, metadata={"check": _p_init})
    attacks: Sequence[str] | None = None  # checked by the evaluator, which owns the attack table
    red_flags: bool = field(default=True, metadata=_flag())
    eps_sweep: Sequence[float] = field(default=(2 / 255, 4 / 255, 8 / 255, 16 / 255),
                                       metadata={"check": _eps_list})
    unbounded_eps: float = field(default=1.0, metadata=_nonneg())
    unbounded_steps: int = field(default=20, metadata=_int(1))
    unbounded_n: int | None = field(default=100, metadata=_int(1, none=True))
    noise_draws: int = field(default=20, metadata=_int(1))
    rs_tol: float = field(default=1.0, metadata=_nonneg())
    saturation_acc: float = field(default=1.0, metadata=_nonneg())
    seed: int = field(default=0, metadata={"check": lambda _n, v: int(v)})
    confidence: float = field(default=0.95, metadata={"check": _open_unit})
    progress: bool | None = None
    labels: str = field(default="true", metadata=_choice(*LABELS))
    clip: bool = field(default=True, metadata=_flag())

    def __post_init__(self) -> None:
        for f in fields(AttackSettings):
            check = f.metadata.get("check")
            if check is not None:
                setattr(self, f.name, check(f.name, getattr(self, f.name)))
        self.check_together()

    def check_together(self) -> None:
        """The checks that need several fields, and the derived values."""
        self.steps_l2 = self.steps_l2 or self.steps
        if self.red_flags and len(self.eps_sweep) < 2:
            raise EvaluatorConfigError(
                f"eps_sweep needs at least two distinct values, got {list(self.eps_sweep)}")

    def reading(self, clipping: bool = True) -> dict[str, Any]:
        """The settings of the authors' reading that differ from bioreg's defaults (``labels``, and with
        ``clipping`` the ``clip`` flag), for the record; empty for the thesis's settings."""
        out: dict[str, Any] = {}
        if self.labels != "true":
            out["labels"] = self.labels
        if clipping and not self.clip:
            out["clip"] = False
        return out
