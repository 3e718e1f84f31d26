"""The correlation structure of eq 2.14 (Dutta 2019, §2.3): parameters, S, T and the dense Sigma.

``Sigma = T (x) S + c 11^T`` off the diagonal, unit diagonal; units ordered ``(map, y, x)``
(package docstring of :mod:`bioreg.layers.correlation`).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Any

import torch
from torch import Tensor

from bioreg.layers.base import RegularizerConfigError, kernel_similarity

__all__ = [
    "DISTANCE_SCALES",
    "CorrelationParams",
    "check_distance_scale",
    "resolve_distance_scale",
    "spatial_matrix",
    "tuning_matrix",
    "correlation_matrix",
]

#: Named meanings of ``distance_scale`` (eq 2.14's "scaled Euclidean distance"); a number > 0 is accepted too.
DISTANCE_SCALES = ("grid", "input")


def check_distance_scale(value: Any) -> float | str:
    """``"grid"``, ``"input"`` or a finite number > 0 (returned as float); anything else is an error."""
    if isinstance(value, str):
        if value in DISTANCE_SCALES:
            return value
        try:
            value = float(value)
        except ValueError:
            raise RegularizerConfigError(
                f"distance_scale must be one of {DISTANCE_SCALES} or a number > 0 (grid: units of the "
                "layer's "
                f"own grid, = 1; input: input pixels, = the layer's cumulative stride), got {value!r}"
            ) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise RegularizerConfigError(
            f"distance_scale must be one of {DISTANCE_SCALES} or a finite number > 0, got {value!r}"
        )
    return float(value)


def resolve_distance_scale(value: float | str, ctx: Any = None, who: str = "distance_scale=input") -> float:
    """The number ``d`` is scaled by: ``grid`` -> 1, a number -> itself, ``input`` -> the cumulative
    stride of the insertion point (``ctx.cumulative_stride(who)``, input pixels between neighbouring
    units); an anisotropic stride (sy != sx) is an error, since eq 2.14 has one scale."""
    value = check_distance_scale(value)
    if value == "grid":
        return 1.0
    if isinstance(value, float):
        return value
    if ctx is None:
        raise RegularizerConfigError(
            f"{who}: distance_scale=input needs the insertion context (bind it first)"
        )
    sy, sx = ctx.cumulative_stride(who)
    if sy != sx:
        raise RegularizerConfigError(
            f"{who}: the point {ctx.point!r} has different strides along y and x ({sy}, {sx}); "
            "eq 2.14 has one "
            "distance scale: give distance_scale a number"
        )
    return float(sy)


@dataclass(frozen=True)
class CorrelationParams:
    """Hyper-parameters of eq 2.14; the defaults are those of Fig 2.3 (Dutta 2019).

    ``a`` (>= 0): spatial correlation at distance 0; ``b`` (>= 0): its decay per unit of distance;
    ``c`` in [0, 1]: correlation floor shared by every pair; ``tau`` (> 0): tuning temperature;
    ``distance_scale`` (> 0): ``d = distance_scale * (Euclidean distance in feature-map pixels)``.
    The thesis calls ``d`` "the scaled Euclidean distance" but eq 2.15 is the plain Euclidean
    distance of feature-map coordinates, so the default scale is 1 (one unit per pixel; the modules'
    ``distance_scale: grid``; ``input`` resolves to the layer's cumulative stride, see
    :func:`resolve_distance_scale`). With the
    defaults the spatial term ``a - b d`` reaches 0 at ``d = 52.3`` pixels, i.e. it stays positive
    over a whole 32 x 32 map (largest distance 43.8), matching "every neuron is correlated to
    every other neuron in the same layer" (§2.3).
    """

    a: float = 0.225
    b: float = 0.0043
    c: float = 0.09
    tau: float = 1.87
    distance_scale: float = 1.0

    def __post_init__(self) -> None:
        for name, value in zip(("a", "b", "c", "tau", "distance_scale"), astuple(self), strict=True):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise RegularizerConfigError(
                    f"CorrelationParams.{name} must be a finite number, got {value!r}"
                )
        if self.a < 0:
            raise RegularizerConfigError(f"CorrelationParams.a must be >= 0, got {self.a!r}")
        if self.b < 0:
            raise RegularizerConfigError(f"CorrelationParams.b must be >= 0, got {self.b!r}")
        if not 0 <= self.c <= 1:
            raise RegularizerConfigError(f"CorrelationParams.c must be in [0, 1], got {self.c!r}")
        if self.tau <= 0:
            raise RegularizerConfigError(f"CorrelationParams.tau must be > 0, got {self.tau!r}")
        if self.distance_scale <= 0:
            raise RegularizerConfigError(
                f"CorrelationParams.distance_scale must be > 0, got {self.distance_scale!r}"
            )

    @property
    def delta(self) -> float:
        """Diagonal slack ``1 - a - c``: what eq 2.14's diagonal ``a + c`` lacks to reach 1."""
        return 1.0 - self.a - self.c

    def value(self, distance: Tensor, similarity: Tensor) -> Tensor:
        """Eq 2.14 evaluated element-wise (``distance`` already in units of ``d``, i.e. scaled)."""
        spatial = (self.a - self.b * distance).clamp_min(0.0)
        return spatial * torch.exp((similarity - 1.0) / self.tau) + self.c


def _check_shape(height: int, width: int) -> None:
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise RegularizerConfigError(f"{name} must be a positive integer, got {v!r}")


def spatial_matrix(
    height: int, width: int, params: CorrelationParams, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``S[p, q] = [a - b d(p, q)]^+`` over the ``H W`` positions of a map (eqs 2.14-2.15).

    Positions are ordered row-major (``p = y * W + x``). ``d = distance_scale * ||p - q||_2``.
    ``S`` is symmetric with ``a`` on the diagonal but is *not* positive semi-definite in general.
    """
    _check_shape(height, width)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij"
    )
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)
    d = params.distance_scale * torch.cdist(pos, pos)
    return (params.a - params.b * d).clamp_min(0.0)


def _check_weight(weight: Tensor, channels: int | None = None, *, finite: bool = True) -> None:
    """Shape checks; with ``finite`` also the values (a host read: the samplers skip it off the CPU)."""
    if not isinstance(weight, Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise RegularizerConfigError(
            f"weight must be a 4-D convolution kernel (C_out, C_in, kh, kw), got {shape}"
        )
    if channels is not None and weight.shape[0] != channels:
        raise RegularizerConfigError(
            f"weight has {weight.shape[0]} output channels but the layer has C={channels} feature maps"
        )
    if finite and not torch.isfinite(weight).all():
        raise RegularizerConfigError("weight contains non-finite values (NaN or inf)")


def tuning_matrix(weight: Tensor, params: CorrelationParams, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``T[i, j] = exp((k_ij - 1) / tau)``, ``k`` = cosine similarity of kernels (eqs 2.14, 2.16)."""
    _check_weight(weight)
    return _tuning(weight, params, dtype)


def _tuning(weight: Tensor, params: CorrelationParams, dtype: torch.dtype = torch.float64) -> Tensor:
    """:func:`tuning_matrix` without the checks (no host read: the structured sampler's refresh)."""
    k = kernel_similarity(weight.detach().to(dtype))
    return torch.exp((k - 1.0) / params.tau)


def correlation_matrix(
    weight: Tensor, height: int, width: int, params: CorrelationParams, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Dense eq 2.14 for a layer: ``(C H W) x (C H W)``, units ordered ``(map, y, x)``.

    Off the diagonal ``T (x) S + c``; unit diagonal. Not necessarily positive semi-definite.
    """
    t = tuning_matrix(weight, params, dtype=dtype)
    s = spatial_matrix(height, width, params, dtype=dtype).to(t.device)
    sigma = torch.kron(t, s) + params.c
    sigma.fill_diagonal_(1.0)
    return sigma
