"""NormOut: activation-dependent dropout modelled on synaptic failure (Singh 2023, §2.2).

Each unit ``i`` of each example ``j`` is *kept* (left untouched) with probability
``p_i^j`` and set to zero otherwise. The keep probability grows with the
magnitude of the unit's own activation ``|O_i^j|`` relative to a maximum taken
over a *pool* (§2.2.1–2.2.3):

* ``temporal`` — over the batch, separately for every unit ("TemporalMax",
  ``p = |O_i^j| / max_j' |O_i^j'|``);
* ``spatial`` — over the layer, separately for every example ("SpatialMax",
  ``p = |O_i^j| / max_i' |O_i'^j|``);
* ``spatiotemporal`` — over both ("SpatiotemporalMax", ``p = |O_i^j| / max |O|``).

The *softmax* form (§2.2.4) replaces the ratio by
``p = exp(|O_i^j| / T) / exp(max(mu) / T) = exp((|O_i^j| - max(mu)) / T)`` with
temperature ``T`` and ``mu`` the same pool; it is evaluated in the shifted form,
so very large ``|O| / T`` cannot overflow, and every ``p`` lies in ``(0, 1]``.

What a *unit* is: for linear activations ``(N, F)`` one of the ``F`` features;
for convolutional maps ``(N, C, H, W)`` one of the ``C·H·W`` positions of the
map, so "the layer" of one example (spatial pool) is all ``C·H·W`` values of
that example and the temporal pool of a unit is the same ``(c, h, w)`` across
the batch (``extent="layer"``, the thesis's "across the layer"; docs/decisions/normout.md).
``extent="pixel"`` is the authors' code instead: "the layer" is the ``C`` channels at one
pixel (their max over ``dim=1``), so the spatial pool is per ``(n, h, w)`` and the spatiotemporal
pool per ``(h, w)``; on ``(N, F)`` activations both extents are the same.
:meth:`NormOut.replacing` builds NormOut as the *replacement* of a module (``mode: replace``), as
the authors' ``--replace-layers 1 4`` replaced VGG-16's first two BatchNorms.

As the thesis describes (§2.1, "Modifying Dropout"), NormOut only decides
whether a unit is zeroed or left untouched: there is **no** inverted-dropout
rescaling of kept units. The keep probability is computed from detached
activations, so the gradient reaches the kept units only (as for dropout's
mask). In ``eval()`` mode the module is the identity (§2.3.1: "We always remove
the probabilistic layers during inference").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bioreg.layers.base import RegularizerConfigError, float32_internals

__all__ = ["NormOut", "keep_probability", "METHODS", "POOLS", "EXTENTS"]

METHODS = ("max", "softmax")
POOLS = ("temporal", "spatial", "spatiotemporal")
#: what "the layer" of a conv map is: all C*H*W units (the thesis) or the C channels at a pixel (the code)
EXTENTS = ("layer", "pixel")

_THESIS_NAMES = {
    ("max", "temporal"): "TemporalMax",
    ("max", "spatial"): "SpatialMax",
    ("max", "spatiotemporal"): "SpatiotemporalMax",
    ("softmax", "temporal"): "Temporal Softmax",
    ("softmax", "spatial"): "Spatial Softmax",
    ("softmax", "spatiotemporal"): "Spatiotemporal Softmax",
}


def _pool_dims(pool: str, ndim: int, extent: str = "layer") -> tuple[int, ...]:
    """Dimensions the maximum is taken over, for an activation with ``ndim`` dims (batch first)."""
    layer = tuple(range(1, ndim)) if extent == "layer" else (1,)
    if pool == "temporal":
        return (0,)
    if pool == "spatial":
        return layer
    return (0, *layer)


def keep_probability(
    a: torch.Tensor, method: str = "max", pool: str = "temporal", temperature: float | None = None,
    extent: str = "layer",
) -> torch.Tensor:
    """Keep probabilities ``p`` of Singh (2023) §2.2 for activations ``a`` (batch first), in float32.

    ``method="max"``: ``p = |a| / max_pool |a|`` (0 where the whole pool is 0).
    ``method="softmax"``: ``p = exp((|a| - max_pool |a|) / T)``, the thesis's
    ``exp(|a|/T) / exp(max/T)`` without its overflow. No gradient flows through ``p``.
    """
    if a.dim() < 2:
        raise ValueError(
            f"NormOut needs a batch of activations (N, ...) with at least 2 dims, got shape {tuple(a.shape)}")
    m = a.detach().abs().float()
    dims = _pool_dims(pool, m.dim(), extent)
    mx = m.amax(dim=dims, keepdim=True)
    if method == "max":
        return m / mx.clamp_min(torch.finfo(m.dtype).tiny)
    if method == "softmax":
        if temperature is None:
            raise RegularizerConfigError("NormOut method 'softmax' needs a temperature > 0")
        return torch.exp((m - mx) / float(temperature))
    raise RegularizerConfigError(f"unknown NormOut method {method!r}; valid choices: {', '.join(METHODS)}")


class NormOut(nn.Module):
    """Synaptic-failure dropout of Singh (2023) §2.2 (TemporalMax, SpatialMax, SpatiotemporalMax, Softmax).

    Parameters
    ----------
    method:
        ``"max"`` (ratio to the pool maximum, §2.2.1–2.2.3) or ``"softmax"``
        (§2.2.4, needs ``temperature``).
    pool:
        ``"temporal"`` (over the batch, per unit), ``"spatial"`` (over the layer,
        per example) or ``"spatiotemporal"`` (over both).
    temperature:
        ``T > 0`` of the softmax form; must be ``None`` for ``method="max"``.
    extent:
        ``"layer"`` (all units of a conv map; default) or ``"pixel"`` (the channels at each pixel,
        as the authors' code); see the module docstring.
    """

    def __init__(self, method: str = "max", pool: str = "temporal", temperature: float | None = None,
                 extent: str = "layer") -> None:
        super().__init__()
        if extent not in EXTENTS:
            raise RegularizerConfigError(
                f"NormOut extent must be one of {', '.join(EXTENTS)}; got {extent!r}")
        self.extent = extent
        if method not in METHODS:
            raise RegularizerConfigError(
                f"NormOut method must be one of {', '.join(METHODS)}; got {method!r}")
        if pool not in POOLS:
            raise RegularizerConfigError(f"NormOut pool must be one of {', '.join(POOLS)}; got {pool!r}")
        if method == "softmax":
            if temperature is None or isinstance(temperature, bool):
                raise RegularizerConfigError(
                    "NormOut method 'softmax' needs a temperature T > 0 (a finite number); got "
                    f"{temperature!r}"
                )
            t = float(temperature)
            if not (t > 0 and math.isfinite(t)):
                raise RegularizerConfigError(
                    f"NormOut temperature must be a finite number > 0; got {temperature!r}")
            self.temperature: float | None = t
        else:
            if temperature is not None:
                raise RegularizerConfigError(
                    "NormOut temperature applies only to method 'softmax' (valid methods: "
                    f"{', '.join(METHODS)}); got temperature={temperature!r} with method {method!r}"
                )
            self.temperature = None
        self.method = method
        self.pool = pool

    @classmethod
    def replacing(cls, module: nn.Module, method: str = "max", pool: str = "temporal",
                  temperature: float | None = None, extent: str = "layer") -> NormOut:
        """NormOut *in place of* ``module`` (``mode: replace``, ``_partial_: true``): the replaced module
        is dropped, as the authors' ``--replace-layers`` dropped the BatchNorm it replaced."""
        return cls(method=method, pool=pool, temperature=temperature, extent=extent)

    @property
    def thesis_name(self) -> str:
        """The variant's name in Singh (2023), e.g. ``"Temporal Softmax"``."""
        return _THESIS_NAMES[(self.method, self.pool)]

    def keep_probability(self, a: torch.Tensor) -> torch.Tensor:
        """``p`` for activations ``a`` (float32, same shape; no gradient)."""
        return keep_probability(a, self.method, self.pool, self.temperature, self.extent)

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        p = self.keep_probability(a)
        keep = torch.rand(p.shape, device=p.device, dtype=p.dtype) < p
        return a * keep.to(a.dtype)

    def extra_repr(self) -> str:
        t = f", temperature={self.temperature:g}" if self.temperature is not None else ""
        e = "" if self.extent == "layer" else f", extent={self.extent!r}"
        return f"method={self.method!r}, pool={self.pool!r}{t}{e}"
