"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): the official files, their verification and loading.

Used for the corruption robustness evaluation of Dutta (2019) §2.4.3 and Strisciuglio et al. (2020).
Official layout (Zenodo record 2535967, ``CIFAR-10-C.tar``)::

    <data_dir>/CIFAR-10-C/<corruption>.npy   uint8 (50000, 32, 32, 3), HWC
    <data_dir>/CIFAR-10-C/labels.npy         integer (50000,)

Each corruption file stacks the 10 000 CIFAR-10 test images, in test-set order, five times:
rows ``(s - 1) * 10000 ... s * 10000 - 1`` hold severity ``s``. ``labels.npy`` is the test labels
repeated five times.

Verification (:func:`verify_cifar10c`) checks, for every requested file, the ``.npy`` header
(dtype, shape, C order) and the exact file size (header + pixel bytes) and then the MD5 against
:data:`OFFICIAL_MD5`; successful MD5 checks are cached in a stamp (:mod:`bioreg.data._io`), so the
3 GB are hashed once. Images are read with ``np.load(mmap_mode="r")``: nothing is loaded into
memory until an item is requested, and then only that item's 3072 bytes.

Command line::

    python -m bioreg.data.cifar10c --download --data-dir DIR   # fetch, unpack, verify
    python -m bioreg.data.cifar10c --verify --data-dir DIR     # check only (exit status 1 if bad)
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._io import FileSpec, download_url, print_progress, safe_extract_tar, verify_files
from .corruptions import CIFAR10C_CORRUPTIONS, SEVERITIES, check_corruptions, check_severities
from .errors import DataError

__all__ = [
    "CIFAR10C_FOLDER",
    "CIFAR10C_TAR_MD5",
    "CIFAR10C_URL",
    "OFFICIAL_LAYOUT",
    "OFFICIAL_MD5",
    "CIFAR10CDataset",
    "CIFAR10CLayout",
    "cifar10c_folder",
    "cifar10c_sets",
    "download_cifar10c",
    "load_cifar10c_labels",
    "mismatched_label_blocks",
    "main",
    "verify_cifar10c",
]

log = logging.getLogger(__name__)

CIFAR10C_URL = "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar"
#: MD5 of ``CIFAR-10-C.tar`` as listed on the Zenodo record
CIFAR10C_TAR_MD5 = "56bf5dcef84df0e2308c6dcbcbbd8499"
CIFAR10C_FOLDER = "CIFAR-10-C"
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)

#: MD5 of the 20 extracted files. Not published by the authors; these values are the ones that
#: independent open-source loaders check (torch-uncertainty ``cifar_c.py``, rai-toolbox
#: ``cifar_corruptions.py`` and two more), all four agreeing on every file
#: (docs/decisions/data_cifar.md).
OFFICIAL_MD5: dict[str, str] = {
    "brightness.npy": "0a81ef75e0b523c3383219c330a85d48",
    "contrast.npy": "3c8262171c51307f916c30a3308235a8",
    "defocus_blur.npy": "7d1322666342a0702b1957e92f6254bc",
    "elastic_transform.npy": "9421657c6cd452429cf6ce96cc412b5f",
    "fog.npy": "7b397314b5670f825465fbcd1f6e9ccd",
    "frost.npy": "31f6ab3bce1d9934abfb0cc13656f141",
    "gaussian_blur.npy": "c33370155bc9b055fb4a89113d3c559d",
    "gaussian_noise.npy": "ecaf8b9a2399ffeda7680934c33405fd",
    "glass_blur.npy": "7361fb4019269e02dbf6925f083e8629",
    "impulse_noise.npy": "2090e01c83519ec51427e65116af6b1a",
    "jpeg_compression.npy": "2b9cc4c864e0193bb64db8d7728f8187",
    "labels.npy": "c439b113295ed5254878798ffe28fd54",
    "motion_blur.npy": "fffa5f852ff7ad299cfe8a7643f090f4",
    "pixelate.npy": "0f14f7e2db14288304e1de10df16832f",
    "saturate.npy": "1cfae0964219c5102abbb883e538cc56",
    "shot_noise.npy": "3a7239bb118894f013d9bf1984be7f11",
    "snow.npy": "bb238de8555123da9c282dea23bd6e55",
    "spatter.npy": "8a5a3903a7f8f65b59501a6093b4311e",
    "speckle_noise.npy": "ef00b87611792b00df09c0b0237a1e30",
    "zoom_blur.npy": "6ea8e63f1c5cdee1517533840641641b",
}


@dataclass(frozen=True)
class CIFAR10CLayout:
    """What a CIFAR-10-C folder must contain: images per severity and the MD5 of each file.

    The official values are :data:`OFFICIAL_LAYOUT`; tests describe their small files with their
    own layout (the checks themselves are the same). A file missing from ``md5`` gets the
    structural checks only.
    """

    n_per_severity: int = 10_000
    md5: Mapping[str, str] = field(default_factory=lambda: dict(OFFICIAL_MD5))

    @property
    def n_total(self) -> int:
        return len(SEVERITIES) * self.n_per_severity

    def specs(self, corruptions: Sequence[str]) -> list[FileSpec]:
        """File specs of ``labels.npy`` and the given corruptions (header, size, MD5)."""
        n = self.n_total
        out = [FileSpec("labels.npy", self.md5.get("labels.npy"), npy_check((n,), None))]
        for c in corruptions:
            name = f"{c}.npy"
            out.append(FileSpec(name, self.md5.get(name), npy_check((n, *IMAGE_SHAPE), np.dtype(np.uint8))))
        return out


OFFICIAL_LAYOUT = CIFAR10CLayout()


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of a ``.npy`` file (reads only the header)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        return tuple(shape), bool(fortran), dtype, fh.tell()


def npy_check(shape: tuple[int, ...], dtype: np.dtype | None) -> Callable[[Path], str | None]:
    """A structural check of a ``.npy`` file: header readable, shape, dtype (``None`` = any integer
    type), C order, and file size = header + ``prod(shape) * itemsize`` bytes."""

    def check(path: Path) -> str | None:
        size = path.stat().st_size
        try:
            got_shape, fortran, got_dtype, offset = _read_npy_header(path)
        except (ValueError, OSError, EOFError) as exc:
            return f"not a readable .npy file ({exc}; {size} bytes); it is damaged or incomplete"
        if dtype is None:
            if got_dtype.kind not in "iu":
                return f"dtype {got_dtype}, expected an integer type"
        elif got_dtype != dtype:
            return f"dtype {got_dtype}, expected {dtype}"
        if got_shape != shape:
            return f"shape {got_shape}, expected {shape}"
        if fortran:
            return "stored in Fortran order, expected C order"
        expected = offset + math.prod(shape) * got_dtype.itemsize
        if size != expected:
            dims = "·".join(str(d) for d in shape)
            return (
                f"wrong size: {size} bytes, expected {expected} (npy header {offset} + {dims} "
                f"{got_dtype} values of {got_dtype.itemsize} byte(s)); the file is truncated or incomplete"
            )
        return None

    return check


def cifar10c_folder(data_dir: str | Path) -> Path:
    """The folder holding the ``.npy`` files: ``<data_dir>/CIFAR-10-C``, or ``data_dir`` itself if it
    already is such a folder (contains ``labels.npy`` and no ``CIFAR-10-C`` subfolder)."""
    d = Path(data_dir).expanduser()
    sub = d / CIFAR10C_FOLDER
    if not sub.is_dir() and (d / "labels.npy").is_file():
        return d
    return sub


def fix_hint(data_dir: str | Path) -> str:
    """The command / URL that restores CIFAR-10-C under ``data_dir``."""
    return (
        f"run `python -m bioreg.data.cifar10c --download --data-dir {data_dir}`, or download "
        f"{CIFAR10C_URL} (2.9 GB, MD5 {CIFAR10C_TAR_MD5}) and run `tar -xf CIFAR-10-C.tar -C {data_dir}`"
    )


def verify_cifar10c(
    data_dir: str | Path,
    corruptions: Sequence[str] | None = None,
    *,
    layout: CIFAR10CLayout = OFFICIAL_LAYOUT,
    use_stamp: bool = True,
) -> Path:
    """Check ``labels.npy`` and the given corruption files (``None`` = all 19); return the folder.

    Raises:
        DataError: naming every missing, wrong-sized or mismatching file and the fix.
    """
    names = check_corruptions(corruptions, CIFAR10C_CORRUPTIONS)
    folder = cifar10c_folder(data_dir)
    verify_files(
        folder, layout.specs(names), dataset="CIFAR-10-C", fix=fix_hint(data_dir), use_stamp=use_stamp
    )
    return folder


def download_cifar10c(
    data_dir: str | Path,
    *,
    url: str = CIFAR10C_URL,
    md5: str = CIFAR10C_TAR_MD5,
    layout: CIFAR10CLayout = OFFICIAL_LAYOUT,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download ``CIFAR-10-C.tar`` into ``data_dir`` (resumable), check its MD5, unpack it and verify.

    Does nothing if all 20 files already verify. The archive is deleted after a successful
    extraction unless ``keep_archive``. Needs about 6 GB free while both exist.
    """
    data_dir = Path(data_dir).expanduser()
    try:
        folder = verify_cifar10c(data_dir, layout=layout)
        log.info("CIFAR-10-C already present and verified in %s", folder)
        return folder
    except DataError:
        pass
    archive = data_dir / "CIFAR-10-C.tar"
    download_url(url, archive, md5=md5, progress=print_progress("CIFAR-10-C.tar") if progress else None)
    # the archive's MD5 is verified, so its content is the official one; members are still
    # checked to stay inside data_dir (no links, no absolute paths, no "..")
    safe_extract_tar(archive, data_dir)
    folder = verify_cifar10c(data_dir, layout=layout)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return folder


def mismatched_label_blocks(labels: np.ndarray, test_labels: np.ndarray,
                            layout: CIFAR10CLayout = OFFICIAL_LAYOUT) -> list[int]:
    """Severities whose block of ``labels.npy`` is not exactly the test labels (all five are checked).

    ``labels.npy`` is the test labels repeated once per severity; a file that passes its checksum can
    still be the wrong file when the checksum list was edited, and any block may be the wrong one."""
    n = layout.n_per_severity
    test_labels = np.asarray(test_labels)
    if len(test_labels) != n or len(labels) != layout.n_total:
        return list(SEVERITIES)
    return [s for s in SEVERITIES if not np.array_equal(labels[(s - 1) * n:s * n], test_labels)]


def load_cifar10c_labels(folder: Path, layout: CIFAR10CLayout = OFFICIAL_LAYOUT) -> np.ndarray:
    """``labels.npy`` as int64 (verified beforehand), checked to lie in 0..9."""
    labels = np.asarray(np.load(folder / "labels.npy"), dtype=np.int64)
    if labels.shape != (layout.n_total,) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{folder / 'labels.npy'}: labels outside 0..9 or wrong shape {labels.shape}")
    return labels


class CIFAR10CDataset(Dataset):
    """The ``n_per_severity`` images of one corruption and severity, read lazily from a memory map.

    Items are ``(x, y)``: ``x`` float32 (3, 32, 32) in [0, 1] (uint8 / 255, not normalised),
    ``y`` int. Item ``i`` is row ``(severity - 1) * n_per_severity + i`` of ``<corruption>.npy``.
    The memory map is opened on first access (and not pickled), so DataLoader workers each
    open their own and the data set costs no memory until read.
    """

    def __init__(
        self, folder: str | Path, corruption: str, severity: int, labels: np.ndarray, n_per_severity: int
    ) -> None:
        if corruption not in CIFAR10C_CORRUPTIONS:
            raise DataError(f"unknown corruption {corruption!r}; valid: {', '.join(CIFAR10C_CORRUPTIONS)}")
        check_severities([severity])
        self.path = Path(folder) / f"{corruption}.npy"
        self.corruption, self.severity, self.n = corruption, int(severity), int(n_per_severity)
        self.start = (self.severity - 1) * self.n
        self.labels = np.asarray(labels[self.start : self.start + self.n], dtype=np.int64)
        if len(self.labels) != self.n:
            raise DataError(f"labels hold {len(labels)} entries, too few for severity {severity}")
        self._images: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return self.n

    def _row(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images")
        return i

    @staticmethod
    def _to_tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(img, dtype=np.uint8)).movedim(-1, -3).float().div_(255.0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        i = self._row(index)
        return self._to_tensor(self._array()[self.start + i]), int(self.labels[i])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched read (used by the DataLoader): one fancy-indexed read of the memory map."""
        rows = [self._row(i) for i in indices]
        imgs = self._to_tensor(self._array()[np.asarray(rows, dtype=np.int64) + self.start])
        return [(imgs[k], int(self.labels[r])) for k, r in enumerate(rows)]

    def read_rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``start..stop-1`` as uint8 (n, 3, 32, 32) CHW images and int64 labels (one read)."""
        start, stop = max(int(start), 0), min(int(stop), self.n)
        rows = np.array(self._array()[self.start + start : self.start + stop])  # one read, writable
        x = torch.from_numpy(rows).permute(0, 3, 1, 2).contiguous()
        return x, torch.from_numpy(np.ascontiguousarray(self.labels[start:stop]))

    def __repr__(self) -> str:
        return f"CIFAR10CDataset({self.corruption}, severity={self.severity}, n={self.n}, path={self.path})"


def cifar10c_sets(
    data_dir: str | Path,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    *,
    layout: CIFAR10CLayout = OFFICIAL_LAYOUT,
) -> dict[str, CIFAR10CDataset]:
    """Verify the needed files, then ``{f"corruption/{name}/{severity}": dataset}`` (nothing loaded)."""
    names = check_corruptions(corruptions, CIFAR10C_CORRUPTIONS)
    sevs = check_severities(severities)
    folder = verify_cifar10c(data_dir, names, layout=layout)
    labels = load_cifar10c_labels(folder, layout)
    return {
        f"corruption/{c}/{s}": CIFAR10CDataset(folder, c, s, labels, layout.n_per_severity)
        for c in names
        for s in sevs
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bioreg.data.cifar10c --download|--verify --data-dir DIR``."""
    p = argparse.ArgumentParser(
        prog="python -m bioreg.data.cifar10c",
        description="Download and/or verify CIFAR-10-C (Zenodo record 2535967) under DATA_DIR/CIFAR-10-C.",
    )
    p.add_argument(
        "--data-dir", default="data", help="folder that holds (or will hold) CIFAR-10-C/ (default: data)"
    )
    p.add_argument(
        "--download", action="store_true", help="download, unpack and verify (skipped if already fine)"
    )
    p.add_argument("--verify", action="store_true", help="check sizes and MD5s of the files")
    p.add_argument(
        "--corruptions", nargs="+", default=None, help="verify only these corruptions (default: all 19)"
    )
    p.add_argument(
        "--no-stamp", action="store_true", help="recompute every MD5 (ignore the verification stamp)"
    )
    p.add_argument("--keep-archive", action="store_true", help="keep CIFAR-10-C.tar after unpacking")
    args = p.parse_args(argv)
    if not (args.download or args.verify):
        p.error("give --download and/or --verify")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.download:
            download_cifar10c(args.data_dir, keep_archive=args.keep_archive)
        folder = verify_cifar10c(args.data_dir, args.corruptions, use_stamp=not args.no_stamp)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n = len(args.corruptions) if args.corruptions else len(CIFAR10C_CORRUPTIONS)
    print(f"CIFAR-10-C OK: {folder} (labels + {n} corruptions verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
