"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def tmp_dirs(tmp_path):
    """Overrides that keep records, checkpoints and outputs inside tmp_path."""
    return [f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt", f"data_dir={tmp_path}/data",
            f"hydra.run.dir={tmp_path}/out"]


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op torch thread for the whole session (restored after), before any fixture of a
    narrower scope: tiny models, small eigendecompositions and per-image work are faster
    single-threaded on a shared 2-core machine (2 OpenMP threads oversubscribe it, up to 100x slower
    element-wise ops), and the tiny training runs keep their arithmetic fixed."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
