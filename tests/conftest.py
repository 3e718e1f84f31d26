"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def tmp_dirs(tmp_path):
    """Overrides that keep records, checkpoints and outputs inside tmp_path."""
    return [f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt", f"data_dir={tmp_path}/data",
            f"hydra.run.dir={tmp_path}/out"]
