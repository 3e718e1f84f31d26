"""Memory layout and compilation of the network (``trainer.channels_last``, ``trainer.compile``).

Both are performance settings, not part of the model: they change neither the parameters nor
their names in checkpoints, and the CPU default (both off) leaves a run exactly as before.

* ``channels_last``: parameters and buffers of 4-D convolutions in NHWC memory layout, the
  layout tensor cores read without transposes; inputs are converted by the first convolution.
  ``trainer=gpu`` sets it.
* ``compile``: ``nn.Module.compile()`` of the network (in place, so state_dict keys keep their
  names). The convolutional trunks compile; regularizers with host-side control flow (the
  correlated-noise refresh counter and its eigendecomposition, DropBlock's epoch schedule, NormOut's
  pool choice) make TorchDynamo break the graph around them and run them eagerly -- results are
  unchanged, only the regions between them are fused. Off by default: compilation costs about a
  minute per model and pays off only on long GPU runs.
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
