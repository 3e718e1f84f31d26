"""A Lightning callback that sleeps after every training epoch (tests/test_slurm_cluster.py): the
test must requeue a SLURM job *between* two epochs of a run that takes seconds on an idle machine.
Sleeping changes no number of the run. Jobs import it as ``helpers.slow_epochs.PauseAfterEpoch``
(the test puts tests/ on their PYTHONPATH)."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class PauseAfterEpoch(Callback):
    def __init__(self, seconds: float = 2.0):
        self.seconds = float(seconds)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        time.sleep(self.seconds)
