"""CIFAR10DataModule on tiny files written in the official ``cifar-10-batches-py`` format.

The official MD5 list stays in force (shown below); the tests use a CIFAR10Files subclass whose
MD5 list is that of the files they wrote.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf

from bioreg.data.augment import AUGMENTATIONS, build_augmentation
from bioreg.data.cifar10 import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10DataModule,
    CIFAR10Files,
    verify_cifar10,
)
from bioreg.data.errors import DataError
from helpers.cifar_files import datamodule_cls, dataset_cls_for, write_cifar10

N_PER_BATCH, N_TEST = 20, 20  # 100 training images, 10 per class




@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    info = write_cifar10(root, N_PER_BATCH, N_TEST)
    return root, info


@pytest.fixture(scope="module")
def dm(files):
    root, info = files
    m = datamodule_cls(info["md5"])(
        data_dir=str(root), download=False, val_size=20, num_workers=0, augment="none"
    )
    m.setup("fit")
    return m


def test_written_files_have_the_official_pickle_format(files):
    root, info = files
    raw = (root / "cifar-10-batches-py" / "data_batch_2").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official Python-2 pickles
    d = pickle.loads(raw, encoding="bytes")
    assert set(d) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (N_PER_BATCH, 3072)
    assert d[b"batch_label"] == b"training batch 2 of 5"
    d = pickle.loads(raw, encoding="latin1")
    assert np.array_equal(d["data"], info["train_x"][N_PER_BATCH : 2 * N_PER_BATCH])


def test_pixel_exact_loading_and_labels(dm, files):
    _, info = files
    tr = dm.split_indices["train"]
    ds = dm.train_eval_set()
    # item 7 of the training split is global training image g = batch g // 20, row g % 20
    g = int(tr[7])
    x, y = ds[7]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    c, r, q = 2, 5, 30  # channel, row, column: byte c*1024 + r*32 + q of the row-major CHW record
    byte = info["train_x"][g, c * 1024 + r * 32 + q]
    assert (
        x[c, r, q].item() == np.float32(byte) / np.float32(255.0) and round(x[c, r, q].item() * 255) == byte
    )
    expect = torch.from_numpy(info["train_x"][g].reshape(3, 32, 32).astype(np.float32) / np.float32(255.0))
    assert torch.equal(x, expect) and y == int(info["train_y"][g])
    assert all(dm.val_set()[i][1] == int(info["train_y"][v]) for i, v in enumerate(dm.split_indices["val"]))
    xt, yt = dm.test_set()[N_TEST - 1]
    assert torch.equal(xt, torch.from_numpy(info["test_x"][-1].reshape(3, 32, 32) / np.float32(255.0)))
    assert yt == int(info["test_y"][-1])
    assert 0.0 <= float(xt.min()) and float(xt.max()) <= 1.0


def test_split_sizes_disjoint_stratified_and_fixed(dm, files):
    root, info = files
    idx = dm.split_indices
    assert (len(idx["train"]), len(idx["val"]), len(dm.test_set())) == (80, 20, N_TEST)
    assert len(dm.train_set()) == 80 and len(dm.val_set()) == 20
    assert np.array_equal(np.sort(np.concatenate([idx["train"], idx["val"]])), np.arange(100))
    assert np.array_equal(np.bincount(info["train_y"][idx["val"]], minlength=10), np.full(10, 2))
    cls = datamodule_cls(info["md5"])
    frac = cls(data_dir=str(root), download=False, val_size=0.1, num_workers=0)
    frac.setup()
    assert len(frac.split_indices["val"]) == 10  # Singh (2023): 90/10
    same = cls(data_dir=str(root), download=False, val_size=20, num_workers=0)
    same.setup()
    assert np.array_equal(same.split_indices["val"], idx["val"])
    other = cls(data_dir=str(root), download=False, val_size=20, split_seed=1, num_workers=0)
    other.setup()
    assert not np.array_equal(other.split_indices["val"], idx["val"])


def test_mean_std_known_without_loading(tmp_path):
    m = CIFAR10DataModule(data_dir=str(tmp_path / "absent"), download=False)
    assert m.mean == CIFAR10_MEAN and m.std == CIFAR10_STD and not m._built
    assert m.input_shape == (3, 32, 32) and m.num_classes == 10


def _is_crop_of_padded(out: torch.Tensor, img: torch.Tensor, pad: int = 4) -> bool:
    padded = F.pad(img, (pad, pad, pad, pad))
    for cand in (padded, padded.flip(-1)):
        for i in range(2 * pad + 1):
            for j in range(2 * pad + 1):
                if torch.equal(cand[:, i : i + 32, j : j + 32], out):
                    return True
    return False


def test_flip_crop_is_a_padded_crop_possibly_flipped(files):
    _, info = files
    img = torch.from_numpy(info["train_x"][3].reshape(3, 32, 32))
    aug = build_augmentation("flip_crop")
    torch.manual_seed(0)
    outs = [aug(img) for _ in range(30)]
    assert all(o.dtype == torch.uint8 and o.shape == (3, 32, 32) for o in outs)
    assert all(_is_crop_of_padded(o, img) for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 5  # random


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_augmented_training_items(files, augment):
    root, info = files
    m = datamodule_cls(info["md5"])(
        data_dir=str(root), download=False, val_size=20, num_workers=0, augment=augment
    )
    m.setup()
    torch.manual_seed(1)
    a = [m.train_set()[5][0] for _ in range(8)]
    torch.manual_seed(1)
    b = [m.train_set()[5][0] for _ in range(8)]
    assert all(x.shape == (3, 32, 32) and x.dtype == torch.float32 for x in a)
    assert all(0.0 <= float(x.min()) and float(x.max()) <= 1.0 for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # reproducible under a seed
    clean = m.train_eval_set()[5][0]
    if augment == "none":
        assert all(torch.equal(x, clean) for x in a)
    else:
        assert any(not torch.equal(x, clean) for x in a)
        assert torch.equal(m.train_eval_set()[5][0], clean)  # train_eval_set never augments
    xb, yb = next(iter(m.train_dataloader()))
    assert xb.shape == (m.batch_size if m.batch_size < 80 else 80, 3, 32, 32) and yb.dtype == torch.int64


def test_singh2023_contains_rotation_and_random_affine():
    t = build_augmentation("singh2023").transforms
    names = [type(x).__name__ for x in t]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "RandomRotation", "RandomApply"]
    assert list(t[0].padding) == [4, 4, 4, 4] and list(t[2].degrees) == [-15.0, 15.0] and t[3].p == 0.5
    aff = t[3].transforms[0]
    assert (
        list(aff.translate) == [0.1, 0.1]
        and list(aff.scale) == [0.9, 1.1]
        and list(aff.degrees) == [0.0, 0.0]
    )


def test_unknown_augment_names_valid_ones(tmp_path):
    with pytest.raises(DataError, match=r"augment='autoaugment'.*none, flip_crop, singh2023"):
        CIFAR10DataModule(data_dir=str(tmp_path), augment="autoaugment")


def test_official_md5_list_is_torchvisions_and_rejects_other_files(files):
    root, info = files
    assert CIFAR10Files.train_list == torchvision.datasets.CIFAR10.train_list
    assert CIFAR10Files.test_list == torchvision.datasets.CIFAR10.test_list
    assert CIFAR10Files.meta == torchvision.datasets.CIFAR10.meta
    with pytest.raises(DataError, match=r"data_batch_1: checksum mismatch.*c99cafc152244af753f735de768cd75f"):
        CIFAR10Files.verify(root, use_stamp=False)
    m = CIFAR10DataModule(data_dir=str(root), download=False)
    with pytest.raises(DataError, match="data.download=true"):
        m.setup()


def test_damaged_or_missing_batch_is_named(tmp_path):
    info = write_cifar10(tmp_path, 10, 10)
    cls = datamodule_cls(info["md5"])
    p = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = bytearray(p.read_bytes())
    raw[-100] ^= 0xFF  # one pixel byte: same size, different content
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data_batch_3: checksum mismatch") as e:
        cls(data_dir=str(tmp_path), download=False, val_size=10, num_workers=0).setup()
    assert "data_batch_1" not in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)
    p.unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing"):
        cls(data_dir=str(tmp_path), download=False, val_size=10, num_workers=0).setup()
    assert dataset_cls_for(info["md5"]).train_list[2][0] == "data_batch_3"


def test_config_keys_are_constructor_parameters(tmp_path):
    from bioreg.config.schema import target_params
    from helpers.configs import compose

    cfg = compose(["+experiment=allconvnet_baseline", f"data_dir={tmp_path}"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    names, _ = target_params(data["_target_"])
    assert set(data) - {"_target_"} <= names
    assert (data["batch_size"], data["val_size"], data["augment"]) == (128, 10000, "none")
    assert data["cifar10c_dir"] == str(tmp_path) and data["download"] is True
    from hydra.utils import instantiate

    m = instantiate(cfg.data, _convert_="all")  # builds without touching the (absent) data
    assert isinstance(m, CIFAR10DataModule) and m.val_size == 10000 and m.augment == "none" and not m._built
    plain = OmegaConf.to_container(compose([f"data_dir={tmp_path}"]).data, resolve=True)
    assert (plain["batch_size"], plain["val_size"], plain["augment"], plain["num_workers"]) == (
        128,
        5000,
        "flip_crop",
        4,
    )


def test_failed_download_is_a_data_error_with_the_manual_fix(tmp_path, files):
    _, info = files
    bad = (tmp_path / "nowhere" / "cifar-10-python.tar.gz").as_uri()
    cls = type("Unreachable", (dataset_cls_for(info["md5"]),), {"url": bad})
    with pytest.raises(
        DataError, match=r"download of CIFAR-10 into .* failed.*tar -xzf cifar-10-python.tar.gz"
    ):
        verify_cifar10(tmp_path / "data", download=True, dataset_cls=cls)
