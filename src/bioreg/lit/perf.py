"""Memory layout and compilation of the network (``trainer.channels_last``, ``trainer.compile``).

Both are performance settings, not part of the model: they change neither the parameters nor
their names in checkpoints, and the CPU default (both off) leaves a run exactly as before.

* ``channels_last``: parameters and buffers of 4-D convolutions in NHWC memory layout, the
  layout tensor cores read without transposes; inputs are converted by the first convolution.
  ``trainer=gpu`` sets it.
* ``compile``: ``nn.Module.compile()`` of the network (in place, so state_dict keys keep their
  names). What compiles (``torch._dynamo.explain`` in training mode, AllConvNet on the CPU, torch
  2.14): the plain network, NormOut, DropBlock and the push-pull ResNet-20 give one graph, no
  break; UG breaks twice around its input check on the CPU (it reads the minimum; on a GPU the check
  is a device-side assert, and ``check_input=false`` removes it); CG / CP break 11 / 15 times in the
  Σ refresh (data-dependent branches, ``.item()``), CorrDrop 4 times (dynamic shapes of
  ``unique``). A break runs that part eagerly; results are unchanged. Off by default: compilation
  costs about a minute per model and pays off only on long GPU runs (its speed-up is not yet
  measured on a GPU).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["configure_performance"]

log = logging.getLogger(__name__)


def configure_performance(lit: nn.Module, channels_last: bool = False, compile: bool | str = False) -> None:
    """Apply ``channels_last`` and ``compile`` to ``lit.model`` (the Classifier) in place.

    ``compile`` is ``false``, ``true`` (TorchInductor) or the name of a ``torch.compile`` backend
    (e.g. ``eager`` to check graph capture without code generation).
    """
    model = getattr(lit, "model", lit)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        log.info("network in channels_last memory layout")
    if compile:
        backend = "inductor" if compile is True else str(compile)
        model.net.compile(backend=backend)
        log.info("network compiled with torch.compile (backend %s)", backend)
