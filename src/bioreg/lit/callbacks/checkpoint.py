"""Lightning's ``ModelCheckpoint`` whose state survives a checkpoint folder that moved.

A run's checkpoints live in ``<ckpt_dir>/<name>/<config_key>/seed<k>/``. When that folder is copied
elsewhere (another file system, a new ``ckpt_dir``) and the run is relaunched there, it resumes from
its ``last.ckpt`` — but Lightning's ``ModelCheckpoint.load_state_dict`` sees a ``dirpath`` other than
the one saved and reloads only ``best_model_path`` ("The dirpath has changed … only
``best_model_path`` will be reloaded"): the best score, the top-k scores and the other paths start
empty. The next validation is then saved as "best" whatever its score, so the resumed run can pick
another best epoch than the uninterrupted one (a tie or a worse epoch replaces the real best), and the
best path still names the old folder.

:class:`RelocatableModelCheckpoint` loads the whole saved state when the folder moved: the paths it
holds (``best_model_path``, ``best_k_models``, ``kth_best_model_path``, ``last_model_path``) are
re-rooted from the saved ``dirpath`` into the present one, where the copied files are, and the
scores are restored as saved. Its checkpoint state key is the one of Lightning's own class
(``ModelCheckpoint{'monitor': …}``), so checkpoints written before it existed load into it, and it
into them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["RelocatableModelCheckpoint"]

log = logging.getLogger("bioreg")


class RelocatableModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that restores its best score and paths from a checkpoint of a moved folder."""

    @property
    def state_key(self) -> str:
        """Lightning's key for a ``ModelCheckpoint`` of these settings (this class's name left out)."""
        key = super().state_key
        own = type(self).__qualname__
        return ModelCheckpoint.__qualname__ + key[len(own):] if key.startswith(own) else key

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is None or self.dirpath is None or os.path.realpath(saved) == os.path.realpath(self.dirpath):
            super().load_state_dict(state_dict)
            return
        log.info("checkpoint folder moved from %s to %s: best score and paths restored there", saved,
                 self.dirpath)
        moved = dict(state_dict, dirpath=self.dirpath)
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            moved[key] = self._rerooted(state_dict.get(key), saved)
        best_k = state_dict.get("best_k_models") or {}
        moved["best_k_models"] = {self._rerooted(p, saved): v for p, v in best_k.items()}
        super().load_state_dict(moved)

    def _rerooted(self, path: Any, saved_dir: str) -> Any:
        """``path`` of a file in the saved folder, as the same file in the present one; others unchanged."""
        if not path:
            return path
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(saved_dir))
        if rel.startswith(os.pardir):
            return path
        return os.path.join(str(self.dirpath), rel)
