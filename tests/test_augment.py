"""bioreg.data.augment: each preset named once and described once, in its per-image and batched forms.

The per-image form must draw exactly what the hand-written torchvision pipelines drew before the presets
became a table (same transforms, same order, same random numbers); the batched form's distributions
are compared with the per-image one in tests/test_device_data.py."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from bioreg.data.augment import AUGMENTATIONS, PRESETS, BatchAugment, batch_augmentation, build_augmentation
from bioreg.data.errors import DataError

#: the pipelines as they were written out before (bioreg 0.1, data/cifar10.py build_augmentation)
REFERENCE = {
    "flip_crop": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5)]),
    "singh2023": lambda: v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5), v2.RandomRotation(15),
        v2.RandomApply([v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1))], p=0.5),
    ]),
}


def test_names():
    assert AUGMENTATIONS == ("none", "flip_crop", "singh2023") == tuple(PRESETS)
    assert build_augmentation("none") is None and batch_augmentation("none") is None


@pytest.mark.parametrize("name", ["flip_crop", "singh2023"])
def test_per_image_preset_draws_what_the_written_out_pipeline_drew(name):
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    new, ref = build_augmentation(name), REFERENCE[name]()
    for seed in range(40):
        torch.manual_seed(seed)
        a = new(x)
        torch.manual_seed(seed)
        assert torch.equal(a, ref(x)), (name, seed)
    assert repr(new) == repr(ref)


def test_batched_preset_has_the_preset_parameters():
    aug = batch_augmentation("singh2023")
    assert isinstance(aug, BatchAugment) and BatchAugment.from_name("singh2023").__dict__ == aug.__dict__
    assert (aug.crop_padding, aug.flip, aug.rotation, aug.affine_p, aug.translate, aug.scale) == (
        4, True, 15.0, 0.5, (0.1, 0.1), (0.9, 1.1))
    flip_crop = batch_augmentation("flip_crop")
    assert (flip_crop.crop_padding, flip_crop.flip, flip_crop.geometric) == (4, True, False)


@pytest.mark.parametrize("build", [build_augmentation, batch_augmentation, BatchAugment.from_name])
def test_unknown_name_names_the_valid_ones(build):
    with pytest.raises(DataError, match="augment='flip' is invalid; valid augmentations: none, flip_crop, "
                                        "singh2023"):
        build("flip")
