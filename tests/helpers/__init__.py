"""Shared test helpers (``tests/`` is on ``sys.path`` under pytest, so this package is ``helpers``).

* :mod:`helpers.configs` — compose the real Hydra config tree (``compose``, ``experiments``, ``REPO``);
* :mod:`helpers.runs` — tiny real training runs, killed and resumed (``cfg_for``, ``kill_and_resume``, …);
* :mod:`helpers.runif` — ``RunIf(...)``: skip marks by machine (GPU, executables, not root);
* :mod:`helpers.cifar_files` — tiny CIFAR-10 / CIFAR-10-C files in the official formats;
* :mod:`helpers.lit_probes` — importable Lightning probes for ``_target_``\\ s in test configs;
* :mod:`helpers.pre_graph_safe` — frozen copies of the pre-graph-safe code, the reference of its
  equality tests;
* :mod:`helpers.slurm_testbed`, :mod:`helpers.slow_epochs` — the one-node SLURM of
  ``make test-slurm``; slow epochs;
* :mod:`helpers.report_records` — hand-made run records and a report scenario for the report tests.
* :mod:`helpers.augment_ref` — the per-image torchvision reference of the batched Singh augmentation.

Test modules import from here, never from each other.
"""
