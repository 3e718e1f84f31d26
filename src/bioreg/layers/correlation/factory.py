"""``build_sampler(kind, shape, ...)``: the dense or the structured sampler by name."""

from __future__ import annotations

from bioreg.layers.base import RegularizerConfigError
from bioreg.layers.correlation.dense import DenseSampler
from bioreg.layers.correlation.ncm import DEFAULT_REPAIR
from bioreg.layers.correlation.sampler import SAMPLER_KINDS, CorrelatedNormalSampler
from bioreg.layers.correlation.structure import CorrelationParams
from bioreg.layers.correlation.structured import StructuredSampler

__all__ = ["build_sampler"]


def build_sampler(
    kind: str,
    shape: tuple[int, int, int],
    params: CorrelationParams | None = None,
    ncm_method: str = DEFAULT_REPAIR,
    **kw: object,
) -> CorrelatedNormalSampler:
    """Build a sampler: ``kind`` in ``{"dense", "structured"}``; ``shape = (C, H, W)``.

    ``ncm_method`` (one of :data:`REPAIR_METHODS`, default ``higham``: eq 2.17) applies to both;
    with the same method both sample the same distribution (the structured sampler up to
    ``ncm_max_units`` units for the nearest-correlation methods, see :class:`StructuredSampler`).
    Extra keywords: ``dtype``, ``ncm_kw`` (dense); ``ncm_max_units``, ``ncm_kw`` (structured).
    """
    if kind == "dense":
        return DenseSampler(shape, params, ncm_method, **kw)  # type: ignore[arg-type]
    if kind == "structured":
        bad = sorted(set(kw) - {"ncm_max_units", "ncm_kw"})
        if bad:
            raise RegularizerConfigError(
                f"unexpected options for the structured sampler: {bad}; valid: ['ncm_kw', 'ncm_max_units']"
            )
        return StructuredSampler(shape, params, ncm_method, **kw)  # type: ignore[arg-type]
    raise RegularizerConfigError(f"unknown sampler kind {kind!r}; choose one of {SAMPLER_KINDS}")
