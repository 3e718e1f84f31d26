"""What every step of the correlation analysis shares: its names and choices, its error, the checks of
its options, the index map of eq 3.3, the λ layout and the model's analysable layers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bioreg.errors import UserError

ZERO_VARIANCE = ("zero", "exclude")
KERNELS = ("gaussian", "norm")
#: VGG-11 layers of Table 3.2 / Figs 3.2–3.6 (thesis numbering: conv layers after 1, 1 and 2 pools)
THESIS_LAYERS = (3, 5, 6, 8, 9)
#: meanings of eq 2.14's "scaled Euclidean distance" for the Linear Exponential column
DISTANCE_SCALES = ("grid", "input_pixels")


class AnalysisError(UserError, ValueError):
    """A bad argument of the correlation analysis; the message is one line naming the valid choices
    (a :class:`bioreg.errors.UserError`)."""


@dataclass
class OffDiagStats:
    """Min, max, mean and (population) std of the ``n`` off-diagonal pairs of a symmetric matrix."""

    n: int
    min: float
    max: float
    mean: float
    std: float

    def as_dict(self) -> dict[str, float]:
        return {"max": self.max, "min": self.min, "mean": self.mean, "std": self.std, "n_pairs": self.n}


# ----------------------------------------------------------------------------------------------
# Checks of the options
# ----------------------------------------------------------------------------------------------


def check_sizes(samples: int, batch: int) -> None:
    for name, v in (("S (samples)", samples), ("B (batch)", batch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise AnalysisError(f"{name} must be an integer >= 2 (a correlation needs 2 observations / an "
                                f"average needs 2 images), got {v!r}")


def check_zero_variance(zero_variance: str) -> None:
    if zero_variance not in ZERO_VARIANCE:
        raise AnalysisError(f"zero_variance={zero_variance!r}; valid: {', '.join(ZERO_VARIANCE)}")


def check_kernel(kernel: str, bandwidth: float) -> None:
    if kernel not in KERNELS:
        raise AnalysisError(f"kernel={kernel!r}; valid: {', '.join(KERNELS)} (gaussian = squared norm, "
                            "norm = eq 3.6 as printed)")
    if not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise AnalysisError(f"bandwidth must be a positive number, got {bandwidth!r}")


# ----------------------------------------------------------------------------------------------
# Index map (eq 3.3), λ layout, layers
# ----------------------------------------------------------------------------------------------


def unit_coords(i: int | Tensor | np.ndarray, height: int, width: int):
    """``f(i) = (x, y, z)`` of eq 3.3: ``z = i // (H W)``, ``x = (i % (H W)) // W``, ``y = (i % (H W)) % W``.

    ``z`` is the feature map, ``x`` the row and ``y`` the column of unit ``i`` in the flatten of a
    ``(C, H, W)`` activation (PyTorch's order). Works on ints, tensors and arrays.
    """
    hw = height * width
    z = i // hw
    r = i % hw
    return r // width, r % width, z


def mix_lambdas(batch: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``B`` mixing weights of one fixed image: ``linspace(0, 1, B)`` (both ends included)."""
    return torch.linspace(0.0, 1.0, batch, dtype=dtype)


def network(model: nn.Module) -> nn.Module:
    """The network that declares insertion points (unwraps ``Classifier.net``)."""
    if getattr(model, "points", None) is not None:
        return model
    inner = getattr(model, "net", None)
    if inner is not None and getattr(inner, "points", None) is not None:
        return inner
    raise AnalysisError(f"{type(model).__name__} declares no insertion points; the analysis needs a bioreg "
                        "model (bioreg.models, e.g. VGG11)")


def insertion_points(net: nn.Module) -> Mapping[str, Any]:
    """The named insertion points of a bioreg network (``net.points``, a mapping or a method)."""
    pts = net.points
    return pts() if callable(pts) else pts


def valid_layers(model: nn.Module) -> list[str]:
    """Points of ``model`` the analysis accepts: 4-D activations produced (possibly via a pool) by a
    Conv2d."""
    net = network(model)
    out = []
    for name, p in insertion_points(net).items():
        if p.producer and isinstance(net.get_submodule(p.producer), nn.Conv2d):
            out.append(name)
    return out


def resolve_layer(model: nn.Module, layer: int | str) -> str:
    """``3`` or ``"3"`` or ``"layer3"`` → the point name ``layer3``; unknown → :class:`AnalysisError`."""
    valid = valid_layers(model)
    key = str(layer)
    for cand in (key, f"layer{key}"):
        if cand in valid:
            return cand
    raise AnalysisError(f"unknown layer {layer!r} for {type(network(model)).__name__}; valid layers (conv "
                        f"points): {', '.join(valid)} (Table 3.2 uses {', '.join(map(str, THESIS_LAYERS))})")


def cumulative_stride(input_shape: Sequence[int], act_shape: Sequence[int]) -> float:
    """Input pixels per feature-map grid step: input width / activation width (2 at VGG-11 layer 3)."""
    return float(input_shape[-1]) / float(act_shape[-1])
