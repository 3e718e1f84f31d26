"""The sampler interface: ``refresh(weight)`` then ``sample(batch)`` of ``N(0, Sigma)`` draws."""

from __future__ import annotations

import torch
from torch import Tensor

from bioreg.layers.base import RegularizerConfigError
from bioreg.layers.correlation.ncm import NCM_METHODS, REPAIR_METHODS
from bioreg.layers.correlation.structure import CorrelationParams

__all__ = ["CorrelatedNormalSampler", "NCM_MAX_UNITS", "SAMPLER_KINDS"]

#: Largest layer (C*H*W units) on which the structured sampler applies a nearest-correlation repair
#: (dense n x n Sigma, one O(n^3) eigendecomposition per Higham iteration); above it, it falls back
#: to the spectral repair with a warning.
NCM_MAX_UNITS = 4096
SAMPLER_KINDS = ("dense", "structured")


def _check_layer_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        c, h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"shape must be (C, H, W), got {shape!r}") from None
    if min(c, h, w) < 1 or len(tuple(shape)) != 3:
        raise RegularizerConfigError(f"shape must be (C, H, W) of positive integers, got {shape!r}")
    return c, h, w


class CorrelatedNormalSampler:
    """Draws ``(batch, C, H, W)`` samples with ``N(0, 1)`` marginals and correlation ``Sigma``.

    Call :meth:`refresh` with the producing convolution's kernel ``(C, C_in, kh, kw)`` whenever
    the kernels change (the correlation's tuning term depends on them); samples are on the
    device and in the dtype of that kernel. Plain object (not an ``nn.Module``): it holds no
    parameters and nothing that belongs in a checkpoint.
    """

    def __init__(self, shape: tuple[int, int, int], params: CorrelationParams | None = None) -> None:
        self.shape = _check_layer_shape(shape)
        self.params = params if params is not None else CorrelationParams()
        if not isinstance(self.params, CorrelationParams):
            raise RegularizerConfigError(
                f"params must be a CorrelationParams, got {type(self.params).__name__}"
            )
        self.n = self.shape[0] * self.shape[1] * self.shape[2]
        self._ready = False
        # the last refresh's clipped-eigenvalue count, kept where it was computed (on the device): read
        # back only when someone asks (n_clipped, repaired), never by the refresh itself
        self._n_clipped: int | Tensor = 0
        self._repaired: bool | Tensor = False

    @property
    def n_clipped(self) -> int:
        """Eigenvalues clipped to 0 by the last refresh's spectral repair (0: none; a host read)."""
        return int(self._n_clipped)

    @property
    def repaired(self) -> bool:
        """Whether the last refresh had to repair an invalid Sigma (a host read)."""
        return bool(self._repaired)

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}: call refresh(weight) before sampling")

    def refresh(self, weight: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, batch: int, *, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def covariance(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, params={self.params})"


def _check_repair(ncm_method: str, ncm_kw: dict | None = None) -> None:
    if ncm_method not in REPAIR_METHODS:
        raise RegularizerConfigError(
            f"unknown repair / nearest-correlation method {ncm_method!r}; choose one of {REPAIR_METHODS}"
        )
    if ncm_kw and ncm_method == "spectral":
        raise RegularizerConfigError(
            f"ncm_kw {sorted(ncm_kw)} apply to ncm_method in {NCM_METHODS}, not to 'spectral'"
        )


def _check_batch(batch: int) -> int:
    # torch.SymInt: a batch size that torch.compile traces symbolically (the last, smaller batch)
    if not isinstance(batch, (int, torch.SymInt)) or isinstance(batch, bool) or batch < 0:
        raise RegularizerConfigError(f"batch must be a non-negative integer, got {batch!r}")
    return batch
