"""Lightning callbacks of bioreg.

* :mod:`~bioreg.lit.callbacks.resume` — ``RNGStateCheckpoint``: the RNG states travel in checkpoints;
* :mod:`~bioreg.lit.callbacks.checkpoint` — ``RelocatableModelCheckpoint``: the best score survives a
  checkpoint folder that moved;
* :mod:`~bioreg.lit.callbacks.model_summary` — ``ModelSummaryNoFlops``;
* :mod:`~bioreg.lit.callbacks.stopping` — ``StopAtAccuracy`` (Dutta 2019 §3.2.3);
* :mod:`~bioreg.lit.callbacks.activation_stats` — ``ActivationStats`` (Singh 2023 Figs 3.1-3.10).

Lightning keys a callback's state in a checkpoint by its class name (``__qualname__``), not its
module, so moving a callback between modules keeps old checkpoints loadable.
"""
