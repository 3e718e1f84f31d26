"""The application layer: what ``train.py`` and the scripts run, on top of the library.

* :mod:`bioreg.app.cli` — the command line: override checks before Hydra, the one user-error exit;
* :mod:`bioreg.app.run` — one training run as a chain of named stages (config → record);
* :mod:`bioreg.app.build` — data module + LitClassifier of a composed config (no training);
* :mod:`bioreg.app.evaluate_checkpoint` — evaluators on a finished run's checkpoint, into its record;
* :mod:`bioreg.app.ckpt_io` — safe loading and atomic saving of checkpoints;
* :mod:`bioreg.app.runlock` — one process per run (a lock file in its checkpoint folder).

Nothing below this package (``layers``, ``models``, ``data``, ``lit``, ``evaluate``, ``results``,
``config``) imports from it.
"""
