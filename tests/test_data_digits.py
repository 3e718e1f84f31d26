"""DigitsDataModule: splits, value range, statistics, evaluation suites and loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bioreg.data import OCCLUSION_KINDS, DigitsDataModule
from bioreg.data.base import resolve_count, stratified_split
from bioreg.data.errors import DataError


@pytest.fixture(scope="module")
def dm() -> DigitsDataModule:
    m = DigitsDataModule(corruptions=["gaussian_noise", "contrast"], severities=[1, 5])
    m.setup("fit")
    return m


def test_split_sizes_disjoint_stratified_and_fixed(dm):
    idx = dm.split_indices
    assert {k: len(v) for k, v in idx.items()} == {"train": 1078, "val": 360, "test": 359}
    allidx = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(np.unique(allidx)) == 1797
    y = np.array([dm.test_set()[i][1] for i in range(len(dm.test_set()))])
    assert np.bincount(y, minlength=10).min() >= 35  # stratified: ~36 per class
    other = DigitsDataModule(corruptions=[])
    other.setup()
    for k in idx:
        assert np.array_equal(idx[k], other.split_indices[k])
    moved = DigitsDataModule(split_seed=1)
    moved.setup()
    assert not np.array_equal(idx["test"], moved.split_indices["test"])


def test_images_shape_range_and_train_stats(dm):
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10
    x, y = dm.test_set()[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    xs = torch.stack([dm.train_eval_set()[i][0] for i in range(len(dm.train_eval_set()))])
    assert xs.min() >= 0 and xs.max() <= 1 and xs.max() > 0.99
    assert torch.equal(xs[:, 0], xs[:, 2])  # grey replicated to RGB
    assert np.allclose(dm.mean, xs.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)
    assert np.allclose(dm.std, xs.std(dim=(0, 2, 3)).numpy(), atol=1e-5)


def test_resize_matches_bilinear_of_sklearn_images():
    from sklearn.datasets import load_digits

    from bioreg.data.digits import load_digits_tensor

    x, y = load_digits_tensor()
    raw = load_digits()
    assert x.shape == (1797, 3, 32, 32) and torch.equal(y, torch.from_numpy(raw.target))
    # reference bilinear resize 8 -> 32 (half-pixel centres, edge clamped) as a 32x8 matrix A: X = A I A^T
    src = np.clip((np.arange(32) + 0.5) * 8 / 32 - 0.5, 0, 7)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 7)
    a = np.zeros((32, 8))
    a[np.arange(32), lo] += 1 - (src - lo)
    a[np.arange(32), hi] += src - lo
    ref = np.einsum("ij,njk,lk->nil", a, raw.images / 16.0, a)
    assert np.allclose(x[:, 1].numpy(), ref, atol=1e-5)


def test_eval_sets_keys_and_occlusion_from_test_set(dm):
    sets = dm.eval_sets(["clean", "occlusion", "corruption"])
    expected = (
        ["test"]
        + [f"occlusion/{k}" for k in OCCLUSION_KINDS]
        + [f"corruption/{n}/{s}" for n in ("gaussian_noise", "contrast") for s in (1, 5)]
    )
    assert list(sets) == expected
    assert all(len(ds) == 359 for ds in sets.values())
    xo, yo = sets["occlusion/central"][3]
    xt, yt = dm.test_set()[3]
    assert yo == yt and (xo[:, 8:24, 8:24] == 0).all() and torch.equal(xo[:, :8], xt[:, :8])
    assert list(dm.eval_sets(["clean"])) == ["test"]


def test_loaders(dm):
    torch.manual_seed(0)
    a = next(iter(dm.train_dataloader()))[1]
    torch.manual_seed(0)
    b = next(iter(dm.train_dataloader()))[1]
    assert torch.equal(a, b) and len(a) == 64  # shuffle order fixed by the run seed
    ev = list(dm.eval_dataloader(dm.test_set()))
    assert sum(len(t[1]) for t in ev) == 359
    assert ev[0][1].tolist()[:5] == [dm.test_set()[i][1] for i in range(5)]  # unshuffled
    assert len(next(iter(dm.val_dataloader()))[1]) == 360


def test_augmentation_random_crop_no_flip():
    m = DigitsDataModule(augment=True, crop_padding=2, corruptions=[])
    m.setup()
    x_plain = m.train_eval_set()[0][0]
    torch.manual_seed(1)
    crops = [m.train_set()[0][0] for _ in range(20)]
    assert any(not torch.equal(c, x_plain) for c in crops)
    for c in crops:  # every crop is a shift of the original by at most 2 px
        ok = False
        for di in range(-2, 3):
            for dj in range(-2, 3):
                sh = torch.nn.functional.pad(x_plain, (2, 2, 2, 2))[:, 2 + di : 34 + di, 2 + dj : 34 + dj]
                ok |= torch.equal(c, sh)
        assert ok


def test_stratified_split_and_resolve_count():
    y = np.repeat(np.arange(3), [10, 20, 30])
    keep, hold = stratified_split(y, 12, seed=0)
    assert len(hold) == 12 and np.bincount(y[hold]).tolist() == [2, 4, 6]
    assert len(np.intersect1d(keep, hold)) == 0 and len(keep) + len(hold) == 60
    assert resolve_count(0.25, 100) == 25 and resolve_count(7, 100) == 7
    with pytest.raises(DataError, match="fraction"):
        resolve_count(1.5, 100)


def test_bad_config_errors_name_valid_choices(dm):
    with pytest.raises(ValueError, match="valid suites: clean, occlusion, corruption"):
        dm.eval_sets(["adversarial"])
    with pytest.raises(ValueError, match="valid corruptions: gaussian_noise, shot_noise"):
        DigitsDataModule(corruptions=["fog"])
    with pytest.raises(ValueError, match="valid severities"):
        DigitsDataModule(severities=[0])
    with pytest.raises(ValueError, match="valid kinds"):
        DigitsDataModule(occlusions=["diagonal"])
    with pytest.raises(ValueError, match="valid parameters"):
        DigitsDataModule(occlusion={"bogus": 1})
    with pytest.raises(ValueError, match="val_size"):
        DigitsDataModule(val_size=5000)


def test_yaml_keys_are_constructor_parameters():
    import inspect
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "conf/data/digits.yaml").read_text())
    assert cfg["_target_"] == "bioreg.data.digits.DigitsDataModule"
    params = set(inspect.signature(DigitsDataModule.__init__).parameters)
    assert set(cfg) - {"_target_"} <= params
    cfg = {k: v for k, v in cfg.items() if k not in ("_target_", "data_dir")}
    DigitsDataModule(**cfg)  # the defaults are valid
