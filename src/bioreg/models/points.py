"""Named insertion points and the machinery that places regularizers at them.

Every model in :mod:`bioreg.models` is a plain ``nn.Module`` that declares its
insertion points with the layer numbering of the thesis it comes from, as a
class attribute ``points`` built by :meth:`points` (an ordered
``{name: Point}``). A :class:`Point` names, by sub-module path,

* ``tap``: the module whose *output* is the point (for a conv layer its ReLU, so
  modules inserted there see post-activation values);
* ``producer``: the weighted module (conv / linear) whose output reaches the
  point (given to modules that need kernels, e.g. for tuning similarity);
* ``block``: the module a ``mode: replace`` entry swaps out (usually the conv of
  the layer; for a ResNet stage the whole stage).

Inserting *after* a point registers a forward hook on the tap module that feeds
its output through the inserted module. The inserted modules themselves live in
``model.regularizers`` (an ``nn.ModuleDict``), so they are visible in
``print(model)``, in ``state_dict`` and in ``parameters()``; the hook object only
holds a reference, which ``copy.deepcopy`` maps consistently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bioreg.errors import UserError
from bioreg.layers.base import InsertionContext, RegularizerConfigError, TrainingState

__all__ = [
    "Point", "InsertionError", "insert", "replace", "bind_all", "measure_shapes", "measure_strides",
    "describe_points", "distinct_points",
]


class InsertionError(UserError, KeyError):
    """An unknown insertion point or an impossible placement."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Point:
    tap: str
    producer: str | None = None
    block: str | None = None
    doc: str = ""


def _points_of(model: nn.Module) -> Mapping[str, Point]:
    pts = getattr(model, "points", None)
    if pts is None:
        raise InsertionError(f"{type(model).__name__} declares no insertion points")
    return pts() if callable(pts) else pts


def distinct_points(model: nn.Module) -> list[str]:
    """The model's point names in declaration (forward) order, aliases of one tap removed (first name
    kept)."""
    seen: set[str] = set()
    names = []
    for name, spec in _points_of(model).items():
        if spec.tap not in seen:
            seen.add(spec.tap)
            names.append(name)
    return names


def resolve_point(model: nn.Module, name: str | int) -> tuple[str, Point]:
    """Look a point up by name (ints are accepted for index-named points)."""
    key = str(name)
    pts = _points_of(model)
    if key not in pts:
        valid = ", ".join(pts)
        raise InsertionError(
            f"unknown insertion point {key!r} for model {type(model).__name__}; valid points: {valid}"
        )
    return key, pts[key]


class _AfterHook:
    """Forward hook that applies an inserted module to the tap's output."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, _mod: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        return self.module(out)


def _registry(model: nn.Module) -> nn.ModuleDict:
    reg = getattr(model, "regularizers", None)
    if reg is None:
        reg = nn.ModuleDict()
        model.regularizers = reg
    return reg


def insert(model: nn.Module, point: str | int, module: nn.Module) -> str:
    """Insert ``module`` after ``point``; returns the key under ``model.regularizers``."""
    key, spec = resolve_point(model, point)
    if not isinstance(module, nn.Module):
        raise RegularizerConfigError(
            f"the regularizer for point {key!r} must be an nn.Module, got {type(module).__name__}; "
            "for a replacement give `mode: replace` and a factory"
        )
    reg = _registry(model)
    slot = f"{key.replace('.', '_')}__{sum(1 for k in reg if k.startswith(key.replace('.', '_') + '__'))}"
    reg[slot] = module
    module._bioreg_point = key  # type: ignore[attr-defined]
    model.get_submodule(spec.tap).register_forward_hook(_AfterHook(module))
    return slot


def replace(model: nn.Module, point: str | int, factory: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replace the block of ``point`` by ``factory(old_block)``; returns the new module."""
    key, spec = resolve_point(model, point)
    if spec.block is None:
        raise InsertionError(f"point {key!r} of {type(model).__name__} has no module that can be replaced")
    old = model.get_submodule(spec.block)
    new = factory(old)
    if not isinstance(new, nn.Module):
        raise RegularizerConfigError(
            f"the replacement factory for point {key!r} returned {type(new).__name__}, not an nn.Module"
        )
    model.set_submodule(spec.block, new)
    return new


class _Stop(Exception):
    """Raised by a hook to end a dry forward pass once every point has been seen."""


@torch.no_grad()
def _dry_forward(model: nn.Module, input_shape: tuple[int, ...], *, tolerate_errors: bool = False) -> None:
    """One eval-mode forward pass of zeros (batch 2) on the model's device and dtype; a hook may end it
    early by raising :class:`_Stop`. With ``tolerate_errors`` any other error ends it silently too."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        dt = p.dtype if p is not None and p.is_floating_point() else torch.float32
        model(torch.zeros((2, *input_shape), device=dev, dtype=dt))
    except _Stop:
        pass
    except Exception:
        if not tolerate_errors:
            raise
    finally:
        model.train(was_training)


@torch.no_grad()
def measure_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shape (without batch) of the activations at every point, by one dry forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, spec in _points_of(model).items():
        tap = model.get_submodule(spec.tap)

        def hook(_m, _i, out, name=name):
            shapes.setdefault(name, tuple(out.shape[1:]))

        # prepend: run before any insertion hook, so we see the tap's own output
        handles.append(tap.register_forward_hook(hook, prepend=True))
    try:
        _dry_forward(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _spatial_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """``(H, W)`` at every point with 4-D activations for one dry forward pass of ``input_shape``.

    The pass stops once every point has been seen, so a model whose head needs the training input
    size (a flatten into a fixed ``nn.Linear``) still gives the sizes of its convolutional points; an
    error before that leaves the remaining points out.
    """
    pts = _points_of(model)
    sizes: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    handles = []
    for name, spec in pts.items():
        def hook(_m, _i, out, name=name):
            if name not in sizes and isinstance(out, torch.Tensor) and out.dim() == 4:
                sizes[name] = (int(out.shape[-2]), int(out.shape[-1]))
            seen.add(name)
            if len(seen) == len(pts):
                raise _Stop

        handles.append(model.get_submodule(spec.tap).register_forward_hook(hook, prepend=True))
    try:
        _dry_forward(model, input_shape, tolerate_errors=True)  # a head that needs the training size
    finally:
        for h in handles:
            h.remove()
    return sizes


def measure_strides(model: nn.Module, input_shape: tuple[int, ...],
                    delta: int = 64) -> dict[str, tuple[int, int]]:
    """Cumulative stride ``(sy, sx)`` of every convolutional point: input pixels between neighbouring units.

    Two dry forward passes, at the input size and at ``delta`` pixels more in each direction: a
    layer of cumulative stride ``s`` (with ``s`` dividing ``delta``) then has exactly ``delta / s``
    more units along each axis, whatever its padding and kernel sizes (``floor((H + k s) / s) =
    floor(H / s) + k``). Points whose growth does not divide ``delta`` (or that cannot be measured)
    are left out. ``delta`` = 64 covers every cumulative stride that divides 64 (the models here
    have 1 to 32).
    """
    c, h, w = (int(x) for x in input_shape)
    base = _spatial_sizes(model, (c, h, w))
    big = _spatial_sizes(model, (c, h + delta, w + delta))
    out: dict[str, tuple[int, int]] = {}
    for name, (h0, w0) in base.items():
        if name not in big:
            continue
        gy, gx = big[name][0] - h0, big[name][1] - w0
        if gy > 0 and gx > 0 and delta % gy == 0 and delta % gx == 0:
            out[name] = (delta // gy, delta // gx)
    return out


def bind_all(model: nn.Module, input_shape: tuple[int, ...],
             state: TrainingState | None = None) -> TrainingState:
    """Give every inserted module that wants it its :class:`InsertionContext`."""
    state = state or TrainingState()
    reg = getattr(model, "regularizers", {})
    if not len(reg):
        return state
    shapes = measure_shapes(model, input_shape)
    pts = _points_of(model)
    strides: dict[str, tuple[int, int]] = {}

    def stride_of(point: str) -> Callable[[], tuple[int, int] | None]:
        def measure() -> tuple[int, int] | None:  # measured on first use, once for all points
            if not strides:
                strides.update(measure_strides(model, tuple(input_shape)) or {"": (0, 0)})
            return strides.get(point)

        return measure

    for module in reg.values():
        point = module._bioreg_point
        spec = pts[point]
        producer = model.get_submodule(spec.producer) if spec.producer else None
        ctx = InsertionContext(point=point, producer=producer, shape=shapes[point], state=state,
                               stride=stride_of(point))
        for m in module.modules():
            bind = getattr(m, "bind", None)
            if callable(bind):
                bind(ctx)
    return state


def describe_points(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> str:
    """A table of the model's insertion points, their modules and activation shapes."""
    shapes = measure_shapes(model, input_shape)
    rows = [f"{'point':<14} {'shape':<18} {'tap':<26} producer"]
    for name, spec in _points_of(model).items():
        rows.append(f"{name:<14} {str(shapes.get(name)):<18} {spec.tap:<26} {spec.producer or '-'}")
    return "\n".join(rows)
