"""CIFAR-10-C on tiny files in the official layout (k images per severity instead of 10 000).

The files get a test layout (their own size and MD5 table); the official table and the checks
themselves are unchanged (see ``test_official_layout_is_strict``).
"""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch

from bioreg.data import _io
from bioreg.data._io import md5sum
from bioreg.data.cifar10c import (
    CIFAR10C_TAR_MD5,
    CIFAR10C_URL,
    OFFICIAL_LAYOUT,
    OFFICIAL_MD5,
    CIFAR10CDataset,
    CIFAR10CLayout,
    cifar10c_sets,
    download_cifar10c,
    main,
    mismatched_label_blocks,
    verify_cifar10c,
)
from bioreg.data.corruptions import CIFAR10C_CORRUPTIONS
from bioreg.data.errors import DataError
from helpers.cifar_files import datamodule_cls, write_cifar10, write_cifar10c

K = 4  # images per severity


@pytest.fixture
def c10c(tmp_path):
    arrays, layout = write_cifar10c(tmp_path, K)
    return tmp_path, arrays, layout


def _fix_in(msg: str, data_dir) -> bool:
    return f"python -m bioreg.data.cifar10c --download --data-dir {data_dir}" in msg and CIFAR10C_URL in msg


def test_per_severity_slicing_is_exact(c10c):
    d, arrays, layout = c10c
    sets = cifar10c_sets(d, ["fog", "contrast"], [1, 3, 5], layout=layout)
    assert sorted(sets) == sorted(f"corruption/{c}/{s}" for c in ("fog", "contrast") for s in (1, 3, 5))
    for c, s in (("fog", 1), ("fog", 5), ("contrast", 3)):
        ds = sets[f"corruption/{c}/{s}"]
        assert len(ds) == K
        for i in range(K):
            x, y = ds[i]
            row = (s - 1) * K + i  # image i of severity s
            expect = torch.from_numpy(arrays[c][row].astype(np.float32) / np.float32(255.0)).permute(2, 0, 1)
            assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and torch.equal(x, expect)
            assert y == int(arrays["labels"][row])
        # batched read (DataLoader) = item by item
        items = ds.__getitems__([3, 0, 2])
        assert all(
            torch.equal(a[0], ds[i][0]) and a[1] == ds[i][1] for a, i in zip(items, [3, 0, 2], strict=True)
        )
        xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=K)))
        assert (
            xb.shape == (K, 3, 32, 32)
            and torch.equal(xb[1], ds[1][0])
            and yb.tolist() == [ds[i][1] for i in range(K)]
        )


def test_images_are_memory_mapped_lazily(c10c):
    d, _, layout = c10c
    ds = cifar10c_sets(d, ["snow"], [2], layout=layout)["corruption/snow/2"]
    assert ds._images is None  # building the suite reads no image
    ds[0]
    assert isinstance(ds._images, np.memmap)
    clone = pickle.loads(pickle.dumps(ds))  # what DataLoader workers receive
    assert clone._images is None and torch.equal(clone[1][0], ds[1][0])


def test_missing_file_named_with_fix(c10c):
    d, _, layout = c10c
    (d / "CIFAR-10-C" / "frost.npy").unlink()
    with pytest.raises(DataError) as e:
        verify_cifar10c(d, ["fog", "frost"], layout=layout)
    msg = str(e.value)
    assert f"{d / 'CIFAR-10-C' / 'frost.npy'}: missing" in msg and "fog.npy" not in msg
    assert _fix_in(msg, d)
    verify_cifar10c(d, ["fog"], layout=layout)  # only the requested files are needed


def test_wrong_sized_file_named_with_fix(c10c):
    d, _, layout = c10c
    p = d / "CIFAR-10-C" / "pixelate.npy"
    full = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(full - 3072)  # one image short, e.g. an interrupted extraction
    with pytest.raises(DataError) as e:
        verify_cifar10c(d, ["pixelate"], layout=layout)
    msg = str(e.value)
    assert f"{p}: wrong size: {full - 3072} bytes, expected {full}" in msg and "truncated" in msg
    assert _fix_in(msg, d)


def test_checksum_mismatch_named_with_fix(c10c):
    d, _, layout = c10c
    p = d / "CIFAR-10-C" / "glass_blur.npy"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x01  # one pixel bit: same size and header
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        verify_cifar10c(d, ["glass_blur", "fog"], layout=layout)
    msg = str(e.value)
    assert f"{p}: checksum mismatch" in msg and layout.md5["glass_blur.npy"] in msg and "fog.npy" not in msg
    assert _fix_in(msg, d)


def test_md5_is_stamped_and_rechecked_after_a_change(c10c, monkeypatch):
    d, _, layout = c10c
    calls = []
    real = _io.md5sum
    monkeypatch.setattr(_io, "md5sum", lambda p, *a, **k: calls.append(p.name) or real(p, *a, **k))
    verify_cifar10c(d, ["fog"], layout=layout)
    assert sorted(calls) == ["fog.npy", "labels.npy"]
    calls.clear()
    verify_cifar10c(d, ["fog"], layout=layout)
    assert calls == []  # cached by the stamp
    p = d / "CIFAR-10-C" / "fog.npy"
    raw = bytearray(p.read_bytes())
    raw[200] ^= 0xFF
    p.write_bytes(bytes(raw))  # new mtime -> hashed again and rejected
    with pytest.raises(DataError, match="fog.npy: checksum mismatch"):
        verify_cifar10c(d, ["fog"], layout=layout)


def test_official_layout_is_strict(c10c):
    d, _, _ = c10c
    assert set(OFFICIAL_MD5) == {f"{c}.npy" for c in CIFAR10C_CORRUPTIONS} | {"labels.npy"}
    assert len(CIFAR10C_CORRUPTIONS) == 19 and all(len(v) == 32 for v in OFFICIAL_MD5.values())
    assert OFFICIAL_LAYOUT.n_per_severity == 10_000
    with pytest.raises(DataError) as e:
        verify_cifar10c(d, ["fog"])  # the real check on the small test files
    msg = str(e.value)
    assert f"shape ({5 * K}, 32, 32, 3), expected (50000, 32, 32, 3)" in msg
    assert f"shape ({5 * K},), expected (50000,)" in msg


def test_bad_names_and_severities(c10c):
    d, _, layout = c10c
    with pytest.raises(ValueError, match="valid corruptions: gaussian_noise"):
        cifar10c_sets(d, ["fgsm"], layout=layout)
    with pytest.raises(ValueError, match="valid severities: 1, 2, 3, 4, 5"):
        cifar10c_sets(d, ["fog"], [6], layout=layout)
    with pytest.raises(IndexError):
        cifar10c_sets(d, ["fog"], [1], layout=layout)["corruption/fog/1"][K]


def test_download_extracts_verifies_and_removes_archive(tmp_path):
    src = tmp_path / "src"
    _, layout = write_cifar10c(src, K)
    tar = tmp_path / "CIFAR-10-C.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(src / "CIFAR-10-C", arcname="CIFAR-10-C")
    dest = tmp_path / "data"
    url = tar.as_uri()
    folder = download_cifar10c(dest, url=url, md5=_io.md5sum(tar), layout=layout, progress=False)
    assert folder == dest / "CIFAR-10-C" and not (dest / "CIFAR-10-C.tar").exists()
    assert np.array_equal(np.load(folder / "fog.npy"), np.load(src / "CIFAR-10-C" / "fog.npy"))
    (folder / "zoom_blur.npy").unlink()
    with pytest.raises(DataError, match="has MD5 .* expected 0{32}"):
        download_cifar10c(dest, url=url, md5="0" * 32, layout=layout, progress=False)
    assert not (folder / "zoom_blur.npy").exists()


def test_cli_reports_failure(tmp_path, capsys):
    assert main(["--verify", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "labels.npy: missing" in err and "gaussian_noise.npy: missing" in err and CIFAR10C_URL in err
    assert CIFAR10C_TAR_MD5 in err


# --------------------------------------------------------------- through CIFAR10DataModule
N_TEST = 10


@pytest.fixture
def both(tmp_path):
    info = write_cifar10(tmp_path, 10, N_TEST)
    _, layout = write_cifar10c(tmp_path / "c", N_TEST, labels=info["test_y"], labels_dtype=np.int64)
    return tmp_path, info, layout


def _dm(root, info, layout, **kw):
    kw = {
        "data_dir": str(root),
        "download": False,
        "val_size": 10,
        "num_workers": 0,
        "cifar10c_dir": str(root / "c"),
    } | kw
    return datamodule_cls(info["md5"], layout)(**kw)


def test_datamodule_corruption_suite(both):
    root, info, layout = both
    m = _dm(root, info, layout, corruptions=["gaussian_noise", "saturate"], severities=[2, 4])
    sets = m.eval_sets(["clean", "corruption"])
    assert sorted(sets) == sorted(
        ["test"] + [f"corruption/{c}/{s}" for c in ("gaussian_noise", "saturate") for s in (2, 4)]
    )
    ds = sets["corruption/saturate/4"]
    assert isinstance(ds, CIFAR10CDataset) and len(ds) == N_TEST
    assert [ds[i][1] for i in range(N_TEST)] == [m.test_set()[i][1] for i in range(N_TEST)]
    xb, _ = next(iter(m.eval_dataloader(ds)))
    assert xb.shape == (N_TEST, 3, 32, 32)
    everything = _dm(root, info, layout).eval_sets(["corruption"])
    assert len(everything) == 19 * 5  # default: all 19 corruptions x 5 severities


def test_missing_cifar10c_fails_before_training(both):
    root, info, layout = both
    (root / "c" / "CIFAR-10-C" / "spatter.npy").unlink()
    m = _dm(root, info, layout)
    m.setup("fit")
    m.eval_sets(["clean", "occlusion"])  # other suites do not need CIFAR-10-C
    with pytest.raises(DataError) as e:
        m.eval_sets(["clean", "corruption"])  # what run.py calls before trainer.fit
    assert "spatter.npy: missing" in str(e.value) and _fix_in(str(e.value), root / "c")
    m2 = _dm(root, info, layout, corruptions=["fog"])
    assert list(m2.eval_sets(["corruption"])) == [f"corruption/fog/{s}" for s in range(1, 6)]


def test_every_severity_block_of_the_labels_is_compared_with_the_test_labels(tmp_path):
    """labels.npy = the test labels once per severity. A file whose later block is wrong (here severity 4)
    fails even when only severity 1 is requested and its checksum is listed as valid."""
    info = write_cifar10(tmp_path, 10, N_TEST)
    _, layout = write_cifar10c(tmp_path, N_TEST, labels=info["test_y"], corruptions=("fog",))
    folder = tmp_path / "CIFAR-10-C"
    lab = np.load(folder / "labels.npy")
    lab[3 * N_TEST:4 * N_TEST] = (lab[3 * N_TEST:4 * N_TEST] + 1) % 10
    np.save(folder / "labels.npy", lab)
    layout = CIFAR10CLayout(n_per_severity=N_TEST,
                            md5=dict(layout.md5) | {"labels.npy": md5sum(folder / "labels.npy")})
    assert mismatched_label_blocks(lab, info["test_y"], layout) == [4]
    assert mismatched_label_blocks(np.tile(info["test_y"], 5), info["test_y"], layout) == []
    m = _dm(tmp_path, info, layout, corruptions=["fog"], severities=[1], cifar10c_dir=str(tmp_path))
    with pytest.raises(DataError,
                       match=r"do not match the CIFAR-10 test labels .*severity block\(s\) 4 of labels"):
        m.eval_sets(["corruption"])


def test_labels_must_match_the_test_set(tmp_path):
    info = write_cifar10(tmp_path, 10, N_TEST)
    _, layout = write_cifar10c(tmp_path, N_TEST, labels=(info["test_y"] + 1) % 10, corruptions=("fog",))
    m = _dm(tmp_path, info, layout, corruptions=["fog"], cifar10c_dir=str(tmp_path))
    with pytest.raises(DataError, match="do not match the CIFAR-10 test labels"):
        m.eval_sets(["corruption"])
