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

from bioreg.layers.base import InsertionContext, RegularizerConfigError, TrainingState

__all__ = ["Point", "InsertionError", "insert", "replace", "bind_all", "measure_shapes", "describe_points",
           "distinct_points"]


class InsertionError(KeyError):
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
    """The model's point names in declaration (forward) order, aliases of one tap removed (first name kept)."""
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
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        dt = p.dtype if p is not None and p.is_floating_point() else torch.float32
        model(torch.zeros((2, *input_shape), device=dev, dtype=dt))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


def bind_all(model: nn.Module, input_shape: tuple[int, ...], state: TrainingState | None = None) -> TrainingState:
    """Give every inserted module that wants it its :class:`InsertionContext`."""
    state = state or TrainingState()
    reg = getattr(model, "regularizers", {})
    if not len(reg):
        return state
    shapes = measure_shapes(model, input_shape)
    pts = _points_of(model)
    for module in reg.values():
        point = module._bioreg_point
        spec = pts[point]
        producer = model.get_submodule(spec.producer) if spec.producer else None
        ctx = InsertionContext(point=point, producer=producer, shape=shapes[point], state=state)
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
