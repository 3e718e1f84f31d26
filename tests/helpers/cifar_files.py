"""Test helpers: tiny CIFAR-10 / CIFAR-10-C files written in the official on-disk formats.

CIFAR-10 (``cifar-10-batches-py``): Python-2 pickles (protocol 2) of dicts whose keys and strings
are Python-2 ``str`` (``SHORT_BINSTRING`` opcodes), so they load as ``str`` keys with
``encoding="latin1"`` (what torchvision does) and as ``b"data"`` keys with ``encoding="bytes"``,
like the official files. ``data`` is a uint8 (N, 3072) array, row-major CHW, whose raw bytes are
also pickled as a Python-2 ``str`` (decoded by numpy from latin1, as for the official files).

CIFAR-10-C: ``<parent>/CIFAR-10-C/<corruption>.npy`` uint8 (5k, 32, 32, 3) and ``labels.npy``.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

from bioreg.data._io import md5sum
from bioreg.data.cifar10 import CIFAR10DataModule, CIFAR10Files
from bioreg.data.cifar10c import CIFAR10CLayout
from bioreg.data.corruptions import CIFAR10C_CORRUPTIONS

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Str(bytes):
    """A Python 2 ``str``: pickled as (SHORT_)BINSTRING."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, so its dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj: Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + bytes(obj))
        self.memoize(obj)

    dispatch[Py2Str] = save_py2str

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:  # numpy's own reduce, with the raw bytes as a Python-2 str
            from numpy._core.multiarray import _reconstruct

            state = (1, obj.shape, obj.dtype, False, Py2Str(np.ascontiguousarray(obj).tobytes()))
            return _reconstruct, (np.ndarray, (0,), Py2Str(b"b")), state
        return NotImplemented


def dump_py2(obj, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _s(text: str) -> Py2Str:
    return Py2Str(text.encode("latin1"))


def write_cifar10(root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict:
    """Write ``root/cifar-10-batches-py`` with 5 training batches of ``n_per_batch`` and a test batch.

    Labels are balanced (each class equally often per batch when ``n`` is a multiple of 10) and
    shuffled. Returns ``{"train_x", "train_y", "test_x", "test_y", "md5"}`` (x: uint8 (N, 3072)).
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, label: str, prefix: str) -> tuple[np.ndarray, list[int], dict]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.permutation(np.arange(n) % 10)]
        d = {
            _s("data"): x,
            _s("labels"): y,
            _s("batch_label"): _s(label),
            _s("filenames"): [_s(f"{prefix}_{i}.png") for i in range(n)],
        }
        return x, y, d

    xs, ys = [], []
    for b in range(1, 6):
        x, y, d = batch(n_per_batch, f"training batch {b} of 5", f"train{b}")
        dump_py2(d, folder / f"data_batch_{b}")
        xs.append(x)
        ys += y
    tx, ty, d = batch(n_test, "testing batch 1 of 1", "test")
    dump_py2(d, folder / "test_batch")
    meta = {
        _s("num_cases_per_batch"): n_per_batch,
        _s("label_names"): [_s(n) for n in LABEL_NAMES],
        _s("num_vis"): 3072,
    }
    dump_py2(meta, folder / "batches.meta")
    md5 = {p.name: md5sum(p) for p in folder.iterdir() if p.is_file()}
    return {
        "train_x": np.concatenate(xs),
        "train_y": np.array(ys),
        "test_x": tx,
        "test_y": np.array(ty),
        "md5": md5,
    }


def dataset_cls_for(md5: dict[str, str]) -> type[CIFAR10Files]:
    """A CIFAR10Files whose MD5 list is that of the test-written files (the checks are unchanged)."""
    return type(
        "TestCIFAR10Files",
        (CIFAR10Files,),
        {
            "train_list": [[f"data_batch_{b}", md5[f"data_batch_{b}"]] for b in range(1, 6)],
            "test_list": [["test_batch", md5["test_batch"]]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]},
        },
    )


def write_cifar10c(
    parent: Path,
    k: int,
    labels: np.ndarray | None = None,
    corruptions: tuple[str, ...] = CIFAR10C_CORRUPTIONS,
    seed: int = 1,
    labels_dtype=np.uint8,
) -> tuple[dict[str, np.ndarray], CIFAR10CLayout]:
    """Write ``parent/CIFAR-10-C`` with ``5 k`` images per corruption; return (arrays, layout with MD5s)."""
    rng = np.random.default_rng(seed)
    folder = parent / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    if labels is None:
        labels = rng.integers(0, 10, size=k)
    lab = np.tile(np.asarray(labels), 5).astype(labels_dtype)
    np.save(folder / "labels.npy", lab)
    arrays["labels"] = lab
    for c in corruptions:
        a = rng.integers(0, 256, size=(5 * k, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{c}.npy", a)
        arrays[c] = a
    layout = CIFAR10CLayout(n_per_severity=k, md5={p.name: md5sum(p) for p in folder.glob("*.npy")})
    return arrays, layout


def datamodule_cls(md5: dict[str, str], layout: CIFAR10CLayout | None = None) -> type[CIFAR10DataModule]:
    """CIFAR10DataModule reading the test-written files (test MD5 list / CIFAR-10-C layout)."""
    attrs: dict = {"DATASET_CLS": dataset_cls_for(md5)}
    if layout is not None:
        attrs["CIFAR10C_LAYOUT"] = layout
    return type("TestCIFAR10DataModule", (CIFAR10DataModule,), attrs)
