"""Corruption-robustness metrics of Strisciuglio et al. (2020), §4 and Appendix 2.

After Hendrycks & Dietterich (2019), with ``E`` the top-1 error in %:

* ``E_clean`` — error on the clean test set; ``E_corr`` — mean error over every
  corruption × severity;
* corruption error of corruption ``c``:  ``CE_c = Σ_s E_{c,s} / Σ_s E^ref_{c,s}``;
* relative corruption error:  ``rCE_c = Σ_s (E_{c,s} − E_clean) / Σ_s (E^ref_{c,s} − E^ref_clean)``;
* ``mCE`` and ``rmCE`` (the paper's "rCE" column, the relative mCE) — the means of
  ``CE_c`` and ``rCE_c`` over the corruptions, × 100.

The reference network is the paper's CIFAR AlexNet (``E_clean = 13.87``). The
paper publishes only its error per corruption *averaged over the 5 severities*
(``results/paper/pushpull2020_alexnet_reference.csv``), so with the default
reference ``Σ_s E^ref_{c,s} = 5 · mean_c``, i.e. ``CE_c`` is the ratio of the
two means over severities (and likewise ``rCE_c``). A user may instead point
``reference`` at the run record JSON of their own trained reference model; then
the per-severity errors are paired severity by severity.

Evaluators here (``eval.evaluators`` entries, see :mod:`bioreg.evaluate.core`):

* :class:`CorruptionError` — the numbers above from ``ctx.metrics``;
* :class:`GaussianNoiseSweep` — accuracy on the clean test set with additive
  Gaussian noise of increasing standard deviation (paper Table 4 sensitivity
  study), with deterministic noise shared by every model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bioreg.results.records import UNREADABLE, read_record

__all__ = [
    "CIFAR10C_CORRUPTIONS", "PAPER_ALEXNET_ERRORS", "PAPER_ALEXNET_CLEAN", "PAPER_REFERENCE", "Reference",
    "paper_reference", "reference_from_record", "errors_from_metrics", "corruption_errors",
    "CorruptionError", "GaussianNoiseSweep",
]

log = logging.getLogger("bioreg")

CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "gaussian_blur", "snow", "frost", "fog", "spatter", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression", "saturate",
)

#: Appendix 2 of the paper: the CIFAR AlexNet's top-1 error (%) per corruption, mean over the 5 severities
#: (transcribed in results/paper/pushpull2020_alexnet_reference.csv; a test checks the two agree).
PAPER_ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 38.44, "shot_noise": 31.82, "impulse_noise": 46.13, "speckle_noise": 31.26,
    "defocus_blur": 23.53, "glass_blur": 40.97, "motion_blur": 29.32, "zoom_blur": 26.89,
    "gaussian_blur": 27.78, "snow": 26.94, "frost": 28.26, "fog": 30.31, "spatter": 25.19,
    "brightness": 17.84, "contrast": 46.77, "elastic_transform": 22.25, "pixelate": 18.36,
    "jpeg_compression": 18.48, "saturate": 22.15,
}
PAPER_ALEXNET_CLEAN = 13.87
PAPER_REFERENCE = "paper_alexnet"

# per corruption either {severity: error %} or a float = mean error over the severities
Errors = Mapping[str, "Mapping[int, float] | float"]


@dataclass
class Reference:
    """Errors (%) of the reference network that CE and rCE are normalised by."""

    name: str
    clean: float
    errors: dict[str, dict[int, float] | float]
    source: str = ""
    per_severity: bool = field(init=False)

    def __post_init__(self) -> None:
        self.per_severity = all(isinstance(v, Mapping) for v in self.errors.values())


def paper_reference() -> Reference:
    """The paper's CIFAR AlexNet (Appendix 2): means over severities only."""
    return Reference(
        name="alexnet_cifar (Strisciuglio et al. 2020, Appendix 2)", clean=PAPER_ALEXNET_CLEAN,
        errors=dict(PAPER_ALEXNET_ERRORS), source="paper: means over the 5 severities (sum = 5 x mean)",
    )


def errors_from_metrics(
    metrics: Mapping[str, Mapping[str, float]],
) -> tuple[float | None, dict[str, dict[int, float]]]:
    """``(E_clean, {corruption: {severity: E}})`` in % from a run's ``metrics`` (accuracies in %)."""
    clean = metrics.get("test")
    e_clean = 100.0 - float(clean["acc"]) if clean is not None else None
    per: dict[str, dict[int, float]] = {}
    for key, m in metrics.items():
        if not key.startswith("corruption/"):
            continue
        parts = key.split("/")
        if len(parts) != 3:
            raise ValueError(f"metric key {key!r} is not of the form corruption/<name>/<severity>")
        per.setdefault(parts[1], {})[int(parts[2])] = 100.0 - float(m["acc"])
    return e_clean, per


def _resolve(path: str) -> Path:
    try:
        from hydra.utils import to_absolute_path

        return Path(to_absolute_path(str(path)))
    except Exception:  # not under Hydra
        return Path(path).expanduser().resolve()


def reference_from_record(path: str | Path) -> Reference:
    """A reference network from the run record JSON of a bioreg run (its per-severity errors)."""
    p = _resolve(str(path))
    if not p.is_file():
        raise ValueError(
            f"robustness reference {str(path)!r}: no such file; valid values: {PAPER_REFERENCE!r} (the "
            "paper's CIFAR AlexNet) or the path of a run record JSON (results/runs/<name>/<key>/seed<k>.json)"
        )
    rec = read_record(p)
    if rec.get("status") == UNREADABLE:
        raise ValueError(f"robustness reference {str(path)!r} is not a run record: {rec['error']}")
    e_clean, per = errors_from_metrics(rec.get("metrics") if isinstance(rec.get("metrics"), Mapping) else {})
    if e_clean is None or not per:
        raise ValueError(
            f"robustness reference {str(path)!r} has no 'test' and 'corruption/<name>/<severity>' metrics; "
            "give the record of a run evaluated with eval.suites containing clean and corruption"
        )
    name = f"{rec.get('name', p.stem)} (seed {rec.get('seed', '?')})"
    return Reference(name=name, clean=e_clean, errors=per, source=str(p))


def _mean(v: Mapping[int, float] | float) -> float:
    if isinstance(v, Mapping):
        return sum(v.values()) / len(v)
    return float(v)


def _ce_terms(run: Any, ref: Any, e_clean: float,
              ref_clean: float) -> tuple[float, float, float, float] | None:
    """Numerator and denominator of one corruption's CE and rCE: sums over the severities both sides
    have, or the means when either side gives only a mean; ``None`` when they share no severity."""
    if isinstance(run, Mapping) and isinstance(ref, Mapping):
        sevs = sorted(set(run) & set(ref))
        if not sevs:
            return None
        return (sum(run[s] for s in sevs), sum(ref[s] for s in sevs), sum(run[s] - e_clean for s in sevs),
                sum(ref[s] - ref_clean for s in sevs))
    num, den = _mean(run), _mean(ref)  # means over severities: Σ_s = n · mean on both sides
    return num, den, num - e_clean, den - ref_clean


def _finite_mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def corruption_errors(
    errors: Errors,
    e_clean: float,
    reference: Reference,
    corruptions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """CE, rCE, mCE and rmCE (all × 100) of a model against ``reference``.

    ``errors[c]`` is ``{severity: E}`` or the mean error over severities (then
    only means can be compared). When both sides give severities, the sums run
    over the severities both have (``Σ_s`` in the module docstring); otherwise the
    ratio of the means is used, which equals the ratio of the sums over the same
    (five) severities. Corruptions asked for but missing from ``errors`` are
    reported in ``corruptions_missing``; corruptions without a reference value in
    ``corruptions_without_reference``; neither enters mCE/rmCE.
    """
    wanted = list(corruptions) if corruptions is not None else list(errors)
    used, missing, no_ref, unmatched = [], [], [], {}
    ce: dict[str, float] = {}
    rce: dict[str, float] = {}
    all_errors: list[float] = []
    for c in wanted:
        if c not in errors:
            missing.append(c)
            continue
        run = errors[c]
        all_errors.extend(run.values() if isinstance(run, Mapping) else [float(run)])
        ref = reference.errors.get(c)
        if isinstance(run, Mapping) and isinstance(ref, Mapping) and set(run) != set(ref):
            unmatched[c] = sorted(set(run) ^ set(ref))
        terms = None if c not in reference.errors else _ce_terms(run, ref, e_clean, reference.clean)
        if terms is None:
            no_ref.append(c)
            continue
        num, den, rnum, rden = terms
        used.append(c)
        ce[c] = 100.0 * num / den if den > 0 else math.nan
        rce[c] = 100.0 * rnum / rden if rden > 0 else math.nan
    if corruptions is None:
        missing = [c for c in reference.errors if c not in errors]
    out: dict[str, Any] = {
        "e_clean": e_clean,
        "e_corr": sum(all_errors) / len(all_errors) if all_errors else math.nan,
        "ce": ce,
        "mce": _finite_mean(ce.values()),
        "rce": rce,
        "rmce": _finite_mean(rce.values()),
        "reference": {"name": reference.name, "e_clean": reference.clean, "source": reference.source,
                      "per_severity": reference.per_severity},
        "corruptions_used": used,
        "corruptions_missing": missing,
        "corruptions_without_reference": no_ref,
    }
    if unmatched:
        out["severities_unmatched"] = unmatched
    undefined = sorted(c for c in used if not (math.isfinite(ce[c]) and math.isfinite(rce[c])))
    if undefined:
        out["undefined"] = undefined  # reference error (or error increase) <= 0: ratio undefined, left out
    return out


class CorruptionError:
    """Evaluator: E_clean, E_corr, CE/rCE per corruption, mCE and rmCE (record section ``extra.robustness``).

    Args:
        reference: ``"paper_alexnet"`` (default: the paper's CIFAR AlexNet, Appendix 2, means over
            severities) or the path of the run record JSON of a reference model (per-severity errors).
        corruptions: restrict to these corruption names (default: every corruption the run evaluated).
            Names asked for but not evaluated are listed in ``corruptions_missing``.
        require_all: raise instead of reporting when a reference corruption is missing from the run.
    """

    def __init__(self, reference: str = PAPER_REFERENCE, corruptions: Sequence[str] | None = None,
                 require_all: bool = False):
        if not isinstance(reference, str) or not reference:
            raise ValueError(f"reference must be {PAPER_REFERENCE!r} or the path of a run record JSON, "
                             f"got {reference!r}")
        if corruptions is not None:
            bad = [c for c in corruptions if c not in CIFAR10C_CORRUPTIONS]
            if bad:
                raise ValueError(f"unknown corruption(s) {bad}; valid names: "
                                 f"{', '.join(CIFAR10C_CORRUPTIONS)}")
        self.reference = reference
        self.corruptions = list(corruptions) if corruptions is not None else None
        self.require_all = bool(require_all)

    def load_reference(self) -> Reference:
        if self.reference == PAPER_REFERENCE:
            return paper_reference()
        return reference_from_record(self.reference)

    def __call__(self, ctx) -> dict[str, Any]:
        ref = self.load_reference()
        e_clean, per = errors_from_metrics(ctx.metrics)
        if e_clean is None or not per:
            msg = ("the run has no 'test' and/or 'corruption/<name>/<severity>' metrics: evaluate with "
                   "eval.suites containing clean and corruption")
            log.warning("robustness: %s", msg)
            return {"error": msg, "reference": {"name": ref.name, "e_clean": ref.clean}}
        out = corruption_errors(per, e_clean, ref, self.corruptions)
        if out["corruptions_missing"]:
            msg = ("robustness: corruptions not evaluated in this run (left out of mCE/rmCE): "
                   f"{out['corruptions_missing']}")
            if self.require_all:
                raise ValueError(msg + " (require_all=true)")
            log.warning(msg)
        return out


#: Strisciuglio et al. (2020), §4.3 and Table 4: the noise levels are printed as variances sigma^2
#: (std = sqrt: 0, 0.01, 0.0224, 0.0316, 0.0707, 0.1), for images in [0, 1].
PUSHPULL2020_TABLE4_VARIANCES = (0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)
#: a wider sweep of stds (up to 0.3), this project's addition, kept as an option
WIDE_STDS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)


class GaussianNoiseSweep:
    """Evaluator: accuracy (%) on the clean test set under additive Gaussian noise of growing level.

    Levels are given either as ``variances`` (sigma^2, as the push-pull paper prints them; default:
    :data:`PUSHPULL2020_TABLE4_VARIANCES`, the six levels of Strisciuglio et al. 2020, Table 4) or as
    ``stds`` (e.g. :data:`WIDE_STDS`); exactly one of the two. Images are in [0, 1] (the model
    normalises inside). For test image ``i`` the noise is ``std · z_i`` with ``z_i ~ N(0, I)`` drawn
    from a generator seeded with ``seed`` and ``i``: the same noise field for every model, every
    level and every batch size, so accuracies are paired across models. ``clip`` clamps the noisy
    image to [0, 1] (the public push-pull code does not clip). Record section:
    ``{std, variance, acc, n, seed, clip}`` (lists in the order of the levels).
    """

    def __init__(self, stds: Sequence[float] | None = None, seed: int = 0, clip: bool = False,
                 max_samples: int | None = None, variances: Sequence[float] | None = None):
        if stds is not None and variances is not None:
            raise ValueError("give the noise levels either as variances (sigma^2, push-pull Table 4) or as "
                             f"stds, not both (got stds={list(stds)!r}, variances={list(variances)!r}); "
                             "set the other to null")
        if stds is None and variances is None:
            variances = PUSHPULL2020_TABLE4_VARIANCES
        kind, levels = ("variances", variances) if variances is not None else ("stds", stds)
        try:
            levels = [float(v) for v in levels]
        except (TypeError, ValueError) as e:
            raise ValueError(f"{kind} must be a non-empty list of finite numbers >= 0, got {levels!r}") from e
        if not levels or any(not math.isfinite(v) or v < 0 for v in levels):
            raise ValueError(f"{kind} must be a non-empty list of finite numbers >= 0, got {levels!r}")
        if max_samples is not None and int(max_samples) < 1:
            raise ValueError(f"max_samples must be a positive integer or null (all), got {max_samples!r}")
        self.variances = levels if kind == "variances" else [s * s for s in levels]
        self.stds = [math.sqrt(v) for v in levels] if kind == "variances" else levels
        self.seed = int(seed)
        self.clip = bool(clip)
        self.max_samples = None if max_samples is None else int(max_samples)

    def unit_noise(self, index: int, shape: Sequence[int]) -> torch.Tensor:
        """The standard-normal noise field of test image ``index`` (deterministic)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        return torch.randn(tuple(shape), generator=g)

    @torch.no_grad()
    def __call__(self, ctx) -> dict[str, Any]:
        dm = ctx.datamodule
        ds = dm.test_set()
        if self.max_samples is not None and self.max_samples < len(ds):
            ds = torch.utils.data.Subset(ds, range(self.max_samples))
        model = ctx.model
        was_training = model.training
        model.eval()
        correct = [0] * len(self.stds)
        total, offset = 0, 0
        try:
            for x, y in dm.eval_dataloader(ds):
                z = torch.stack([self.unit_noise(offset + j, x.shape[1:]) for j in range(len(x))])
                offset += len(x)
                x, y, z = x.to(ctx.device), y.to(ctx.device), z.to(ctx.device, x.dtype)
                for i, s in enumerate(self.stds):
                    xn = x + s * z if s > 0 else x
                    if self.clip:
                        xn = xn.clamp(0.0, 1.0)
                    correct[i] += int((model(xn).argmax(1) == y).sum())
                total += len(y)
        finally:
            model.train(was_training)
        acc = [100.0 * c / total if total else math.nan for c in correct]
        return {"std": self.stds, "variance": self.variances, "acc": acc, "n": total,
                "seed": self.seed, "clip": self.clip}
