"""Preprocessing of pair images (resize, crop, flip, SDXL facts) and the augmentation draws."""

import numpy as np
import pytest
import torch

from diffalign.data.transforms import augmentation, decode, pair_rng, prepare


def test_transforms_resize_crop_flip_and_sdxl_facts():
    from PIL import Image

    im = Image.fromarray((np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3))
    p = prepare(im, 10)
    assert p.pixels.shape == (3, 10, 10) and p.original_size == (20, 30) and p.crop_top_left == (0, 2)  # round(2.5) = 2, as diffusers
    assert -1 <= p.pixels.min() and p.pixels.max() <= 1
    assert p.time_ids().tolist() == [20.0, 30.0, 0.0, 2.0, 10.0, 10.0]  # SDXL add_time_ids of this image
    f = prepare(im, 10, flip=True)
    assert torch.equal(f.pixels, p.pixels.flip(-1)) and f.crop_top_left == (0, 3)  # 15 − 2 − 10: mirrored
    r = prepare(im, 10, crop="random", flip=True, crop_offset=(0.0, 0.0))
    assert r.crop_top_left == (0, 15 - 0 - 10)  # left 0 in a 15-wide image, mirrored
    a, b = pair_rng(0, 1, 5).random(4), pair_rng(0, 1, 5).random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, pair_rng(0, 2, 5).random(4))
    with pytest.raises(Exception):
        decode(b"junk")


def test_augmentation_draws_depend_only_on_seed_epoch_and_pair():
    a = augmentation(0, 1, 5, hflip=True, caption_dropout=0.5)
    assert a == augmentation(0, 1, 5, hflip=True, caption_dropout=0.5)
    u = pair_rng(0, 1, 5).random(4)
    assert a.flip == (u[0] < 0.5) and a.crop_offset == (u[1], u[2]) and a.drop_caption == (u[3] < 0.5)
    off = augmentation(0, 1, 5, hflip=False, caption_dropout=0.5)
    assert not off.flip and off.crop_offset == a.crop_offset and off.drop_caption == a.drop_caption  # four draws always
