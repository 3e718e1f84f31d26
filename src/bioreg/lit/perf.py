"""Memory layout and compilation of the network (``trainer.channels_last``, ``trainer.compile``).

Both are performance settings, not part of the model: they change neither the parameters nor
their names in checkpoints, and the CPU default (both off) leaves a run exactly as before.

* ``channels_last``: parameters and buffers of 4-D convolutions in NHWC memory layout, the
  layout tensor cores read without transposes; inputs are converted by the first convolution.
  ``trainer=gpu`` sets it.
* ``compile``: ``nn.Module.compile()`` of the network (in place, so state_dict keys keep their
  names), forward and backward. Values (:func:`check_compile`): ``false``; ``true`` (TorchInductor);
  ``reduce-overhead`` (TorchInductor + CUDA graphs: the whole training forward and backward of a
  step replayed as one graph launch, the lever for these launch-bound small networks on a GPU);
  ``max-autotune`` / ``max-autotune-no-cudagraphs`` (TorchInductor's other modes); or the name of a
  ``torch.compile`` backend (``eager`` / ``aot_eager``: graph capture without code generation, what
  the CPU tests use).

Compiling switches the model to **graph-safe mode** (``TrainingState.graph_safe``,
``bioreg.layers.base``): every regularizer's training forward is then one graph with no host read,
no data-dependent shape and no per-step Python number (the per-step host work, the Σ refresh of the
correlated noise and DropBlock's scheduled probability, runs in ``prepare_step`` before the compiled
forward). ``tests/test_graph_safe.py`` checks it for every ``conf/reg`` option with
``torch._dynamo`` (``fullgraph=True``: zero graph breaks, and no recompilation from step to step).
In graph-safe mode the optimizer, where its parameters are on a GPU, takes PyTorch's fused kernel
(:func:`fused_if_possible`: one launch for the whole update instead of one per tensor group).
Compilation costs tens of seconds per model (minutes for CUDA graphs' warm-up of several shapes)
and pays off on long GPU runs; ``make gpu-check`` measures it (README, "Running on an offline GPU
node").
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from bioreg.errors import UserError

__all__ = ["configure_performance", "check_compile", "fused_if_possible", "COMPILE_MODES",
           "CompileOptionError"]

log = logging.getLogger(__name__)

#: ``torch.compile`` modes of TorchInductor that ``trainer.compile`` accepts by name.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileOptionError(UserError, ValueError):
    """``trainer.compile`` is neither a boolean, an Inductor mode nor a ``torch.compile`` backend."""


def check_compile(value: Any) -> bool | str:
    """``trainer.compile`` normalised: ``False``, ``True``, a mode of :data:`COMPILE_MODES` or a backend
    name known to ``torch._dynamo.list_backends``; anything else is a :class:`CompileOptionError`."""
    if value is None or isinstance(value, bool):
        return bool(value)
    import torch._dynamo

    backends = sorted(torch._dynamo.list_backends(exclude_tags=()))
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value in COMPILE_MODES or value in backends:
            return value
    raise CompileOptionError(
        f"trainer.compile must be false, true, an Inductor mode ({', '.join(COMPILE_MODES)}; reduce-overhead "
        f"= CUDA graphs) or a torch.compile backend ({', '.join(backends)}); got {value!r}"
    )


def configure_performance(lit: nn.Module, channels_last: bool = False, compile: bool | str = False) -> None:
    """Apply ``channels_last`` and ``compile`` to ``lit.model`` (the Classifier) in place.

    ``compile``: see :func:`check_compile`. Compiling sets ``lit.state.graph_safe`` (when ``lit`` is a
    LitClassifier), so that the regularizers keep their per-step work out of the compiled forward.
    """
    model = getattr(lit, "model", lit)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        log.info("network in channels_last memory layout")
    compile = check_compile(compile)
    if not compile:
        return
    state = getattr(lit, "state", None)
    if state is not None:
        state.graph_safe = True
    if compile is True or compile in COMPILE_MODES:
        mode = None if compile in (True, "default") else str(compile)
        model.net.compile(backend="inductor", mode=mode)
        log.info("network compiled with torch.compile (inductor, mode %s)", mode or "default")
    else:
        model.net.compile(backend=str(compile))
        log.info("network compiled with torch.compile (backend %s)", compile)


def fused_if_possible(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer with ``fused=True`` when it supports it and every parameter is on a GPU
    (one kernel for the whole update); otherwise ``opt`` itself. Call before the first step: the
    state (momentum buffers) is not carried over, there is none yet."""
    params = [p for g in opt.param_groups for p in g["params"]]
    if not params or "fused" not in opt.defaults or not all(p.is_cuda for p in params) or opt.state:
        return opt
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in opt.param_groups]
    defaults = {k: v for k, v in opt.defaults.items() if k not in ("fused", "foreach", "params")}
    log.info("optimizer %s with fused=True", type(opt).__name__)
    return type(opt)(groups, **defaults, fused=True)
