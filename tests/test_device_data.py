"""The device-resident data path (src/bioreg/data/device.py): batched augmentation with the
per-image path's distributions, seeded and resumable batch order, evaluation loaders that give
the per-item path's tensors bit for bit. CPU tests run the code path on the CPU device
(``device_resident=true``); the GPU test runs training steps under
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from bioreg.data.cifar10 import build_augmentation
from bioreg.data.device import (
    BatchAugment,
    DeviceTrainLoader,
    check_device_resident,
    epoch_seed,
    resolve_device_resident,
)
from bioreg.data.digits import DigitsDataModule
from bioreg.data.errors import DataError
from bioreg.evaluate.core import evaluate_loader
from helpers.augment_ref import torchvision_reference
from helpers.cifar_files import datamodule_cls, write_cifar10, write_cifar10c
from helpers.runif import RunIf

N = 3000  # images per augmentation statistic
CPU = torch.device("cpu")


def coordinate_images(n: int) -> torch.Tensor:
    """uint8 (n, 3, 32, 32): channel 0 = row + 1, channel 1 = column + 1, channel 2 = 200 (0 = padding)."""
    r = torch.arange(32, dtype=torch.uint8)
    img = torch.stack([(r[:, None] + 1).expand(32, 32), (r[None, :] + 1).expand(32, 32),
                       torch.full((32, 32), 200, dtype=torch.uint8)])
    return img.expand(n, 3, 32, 32).contiguous()


def crop_flip_params(out: torch.Tensor, pad: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recover (row offset, column offset, flipped) of crop-then-flip outputs of coordinate images."""
    c0 = out[:, 0, 16, 16].long()
    c1, c1r = out[:, 1, 16, 16].long(), out[:, 1, 16, 17].long()
    flipped = (c1r - c1) == -1
    i = c0 - (16 - pad + 1)
    j = torch.where(flipped, c1 - (15 - pad + 1), c1 - (16 - pad + 1))
    return i.numpy(), j.numpy(), flipped.numpy()


def per_image(aug, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([aug(img) for img in x])


def test_crop_offsets_and_flip_frequencies_match_the_per_image_path():
    x = coordinate_images(N)
    ref = per_image(build_augmentation("flip_crop"), x)
    dev = BatchAugment.from_name("flip_crop")(x, torch.Generator().manual_seed(0))
    assert dev.dtype == torch.uint8 and dev.shape == x.shape
    (ri, rj, rf), (di, dj, df) = crop_flip_params(ref), crop_flip_params(dev)
    for offs in (ri, rj, di, dj):
        assert offs.min() == 0 and offs.max() == 8  # all 9 offsets of 4 px padding occur, no other
        # uniform on 0..8: chi-square goodness of fit (N = 3000, 9 cells)
        assert stats.chisquare(np.bincount(offs, minlength=9)).pvalue > 1e-3
    for a, b in ((ri, di), (rj, dj)):  # the two paths' offset histograms: total variation < 0.06
        tv = 0.5 * np.abs(np.bincount(a, minlength=9) - np.bincount(b, minlength=9)).sum() / N
        assert tv < 0.06
    # flip with p = 0.5: 3.3 standard deviations (0.0091) around 0.5, and the two paths within 0.04
    assert abs(rf.mean() - 0.5) < 0.03 and abs(df.mean() - 0.5) < 0.03 and abs(rf.mean() - df.mean()) < 0.04
    # the recovered geometry explains every pixel of the image centre: a pure crop + flip, nothing else
    assert ((dev[:, 2, 8:24, 8:24] == 200).all())


def test_digits_crop_has_no_flip_and_the_same_offsets():
    from bioreg.data.digits import RandomCropPad

    x = coordinate_images(N)
    ref = per_image(RandomCropPad(2), x)
    dev = BatchAugment(crop_padding=2)(x, torch.Generator().manual_seed(1))
    (ri, rj, rf), (di, dj, df) = crop_flip_params(ref, 2), crop_flip_params(dev, 2)
    assert not rf.any() and not df.any()
    for offs in (ri, rj, di, dj):
        assert offs.min() == 0 and offs.max() == 4
        assert stats.chisquare(np.bincount(offs, minlength=5)).pvalue > 1e-3


def test_singh2023_parameters_have_the_torchvision_distributions():
    aug = BatchAugment.from_name("singh2023")
    p = aug.sample(20000, 32, 32, torch.Generator().manual_seed(2), CPU)
    ang = p["angle"].numpy()
    assert -15.0 <= ang.min() < -14.9 and 14.9 < ang.max() <= 15.0  # v2.RandomRotation(15): U(-15, 15)
    assert stats.kstest(ang, stats.uniform(-15, 30).cdf).pvalue > 1e-3
    assert abs(p["affine"].float().mean().item() - 0.5) < 0.015  # RandomApply(p=0.5)
    for t in (p["tx"], p["ty"]):  # round(U(-3.2, 3.2)): integers -3..3, P(+-3) = 0.7/6.4 each
        v = t.numpy()
        assert set(np.unique(v)) == set(range(-3, 4))
        assert abs((np.abs(v) == 3).mean() - 1.4 / 6.4) < 0.015
    s = p["scale"].numpy()
    assert 0.9 <= s.min() and s.max() <= 1.1 and stats.kstest(s, stats.uniform(0.9, 0.2).cdf).pvalue > 1e-3


def test_batched_geometry_equals_torchvision_for_the_same_parameters():
    """Crop, flip, rotation (nearest, zero fill) and the affine map give torchvision's per-image
    output for the same parameters: >= 99.5 % of the pixels equal (ties of nearest rounding aside)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=g)
    aug = BatchAugment.from_name("singh2023")
    p = aug.sample(len(x), 32, 32, g, CPU)
    out = aug.apply(x, p)
    ref = torchvision_reference(x, p)
    assert (out == ref).float().mean() >= 0.995
    # per image too: no image is transformed differently as a whole
    assert ((out == ref).flatten(1).float().mean(1) >= 0.97).all()


def bar_angles(out: torch.Tensor) -> np.ndarray:
    """Orientation (deg) of the bright bar in each image, from the second moments of its pixels."""
    m = (out[:, 0].float() > 127).float()
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    w = m.sum((1, 2))
    mx, my = (m * xs).sum((1, 2)) / w, (m * ys).sum((1, 2)) / w
    cxx = (m * (xs - mx[:, None, None]) ** 2).sum((1, 2)) / w
    cyy = (m * (ys - my[:, None, None]) ** 2).sum((1, 2)) / w
    cxy = (m * (xs - mx[:, None, None]) * (ys - my[:, None, None])).sum((1, 2)) / w
    return np.degrees(0.5 * np.arctan2(2 * cxy.numpy(), (cxx - cyy).numpy()))


def test_rotation_angle_range_matches_the_per_image_path():
    """A horizontal bar through the whole Singh pipeline on both paths: its measured orientation
    spans +-15 deg (measurement error of a 1-px bar under nearest sampling ~1 deg), with the same
    spread (uniform: std 8.66 deg) and the same distribution (two-sample KS)."""
    n = 1500
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 16, 7:26] = 255
    ref = bar_angles(per_image(build_augmentation("singh2023"), x, seed=4))
    dev = bar_angles(BatchAugment.from_name("singh2023")(x, torch.Generator().manual_seed(4)))
    for a in (ref, dev):
        assert np.abs(a).max() <= 17.0 and np.abs(a).max() >= 13.0
        assert abs(a.std() - 30 / math.sqrt(12)) < 0.6
    assert stats.ks_2samp(ref, dev).pvalue > 1e-3


def test_same_seed_same_order_other_epoch_or_seed_other_order():
    x = torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1).expand(100, 1, 4, 4).contiguous()
    y = torch.arange(100)

    def batches(seed, epoch):
        loader = DeviceTrainLoader(x, y, 32, seed, epoch=lambda: epoch, augment=BatchAugment(crop_padding=1))
        return [(xb.clone(), yb.clone()) for xb, yb in loader]

    a, b = batches(7, 0), batches(7, 0)
    assert len(a) == 4 and [len(yb) for _, yb in a] == [32, 32, 32, 4]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    order = torch.cat([yb for _, yb in a])
    assert sorted(order.tolist()) == list(range(100))  # a permutation: every image once per epoch
    assert not torch.equal(order, torch.cat([yb for _, yb in batches(7, 1)]))
    assert not torch.equal(order, torch.cat([yb for _, yb in batches(8, 0)]))
    assert epoch_seed(7, 0, 0) != epoch_seed(7, 0, 1) != epoch_seed(7, 1, 0)


def test_resumed_data_module_continues_with_the_same_order():
    """The base seed is the data module's resumable state: a fresh module that loads it (as from
    a checkpoint) yields, for epoch e, exactly the batches the first module yields for epoch e."""
    a = DigitsDataModule(device_resident=True, augment=True)
    a.setup()
    la = a.train_dataloader()
    seen = [[(xb.clone(), yb.clone()) for xb, yb in la] for _ in range(3)]  # epochs 0, 1, 2 (own count)
    state = a.state_dict()
    assert set(state) == {"data_seed"}
    b = DigitsDataModule(device_resident=True, augment=True)
    b.setup()
    b.load_state_dict(state)
    # resumed at epoch 2
    b.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=CPU), current_epoch=2)
    lb = b.train_dataloader()
    resumed = [(xb, yb) for xb, yb in lb]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])
               for p, q in zip(seen[2], resumed, strict=True))
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(seen[1], resumed, strict=True))


def test_device_resident_choices_and_resolution():
    assert check_device_resident("auto") == "auto" and check_device_resident(True) is True
    assert check_device_resident("false") is False
    with pytest.raises(DataError, match="valid values: auto, true, false"):
        check_device_resident("yes")
    with pytest.raises(DataError, match="device_resident"):
        DigitsDataModule(device_resident="gpu")
    assert resolve_device_resident("auto", torch.device("cuda", 0)) is True
    assert resolve_device_resident("auto", CPU) is False  # the CPU path stays the DataLoader one
    dm = DigitsDataModule()  # auto, no Trainer: CPU
    dm.setup()
    assert type(dm.train_dataloader()).__name__ == "DataLoader"


def test_eval_loaders_give_the_per_item_tensors_and_metrics(tmp_path):
    """Validation, clean, occlusion and CIFAR-10-C sets through the device loaders: the same float
    tensors as the per-item path, bit for bit, hence the same metrics."""
    info = write_cifar10(tmp_path, 10, 10)
    _, layout = write_cifar10c(tmp_path / "c", 10, labels=info["test_y"], labels_dtype=np.int64)
    kw = dict(data_dir=str(tmp_path), download=False, val_size=10, num_workers=0,
              cifar10c_dir=str(tmp_path / "c"),
              corruptions=["gaussian_noise", "fog"], severities=[1, 5], eval_batch_size=4)
    per = datamodule_cls(info["md5"], layout)(**kw, device_resident=False)
    dev = datamodule_cls(info["md5"], layout)(**kw, device_resident=True)
    sets_p, sets_d = per.eval_sets(["clean", "occlusion", "corruption"]), dev.eval_sets(
        ["clean", "occlusion", "corruption"])
    sets_p["val"], sets_d["val"] = per.val_set(), dev.val_set()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    for name in sets_p:
        lp, ld = per.eval_dataloader(sets_p[name]), dev.eval_dataloader(sets_d[name])
        assert type(ld).__name__ == "DeviceEvalLoader", name
        xp = torch.cat([x for x, _ in lp])
        xd = torch.cat([x for x, _ in ld])
        assert torch.equal(xp, xd), name
        assert evaluate_loader(net, lp, CPU) == evaluate_loader(net, ld, CPU), name
    tr = dev.train_dataloader()
    xb, yb = next(iter(tr))
    assert xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1 and len(tr) == math.ceil(40 / 128)


@RunIf(min_cuda_gpus=1)
def test_training_steps_do_not_sync_with_the_host():
    """Device-resident batches, bf16 autocast, channels_last, noise with its input check, NormOut,
    an SGD step and the finite-loss watch: no device->host synchronisation in any of 5 steps."""
    from bioreg.layers.noise import UncorrelatedGaussian
    from bioreg.layers.normout import NormOut
    from bioreg.lit.finite import NonFiniteWatch

    dev = torch.device("cuda")
    dm = DigitsDataModule(device_resident=True, augment=True, batch_size=64)
    dm.device = dev
    dm.setup()
    loader = dm.train_dataloader()
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), UncorrelatedGaussian(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), NormOut("max", "spatiotemporal"),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    watch = NonFiniteWatch()
    it = iter(loader)
    next(it)  # warm-up step outside the check (lazy CUDA initialisation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(5):
            x, y = next(it)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            watch.update(loss, step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    watch.check()


def test_evaluate_loader_sums_on_the_device_like_python_floats():
    """evaluate_loader accumulates on the device (no host read per batch) with the arithmetic of the
    former per-batch ``.item()`` sums: float64 additions of the float32 batch sums, exact counts."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    data = [(torch.rand(37, 3, 32, 32), torch.randint(0, 10, (37,))) for _ in range(12)]
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for x, y in data:
            logits = net(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
    assert evaluate_loader(net, data, CPU) == {"acc": 100.0 * correct / total, "loss": loss_sum / total,
                                               "n": total}
