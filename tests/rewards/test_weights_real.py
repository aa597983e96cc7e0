"""Sanity checks with the published weights; skipped unless the files are on disk (marker ``weights``).

Ranges are loose, from the papers and model cards (not golden values): run with the weights in the HF
cache or ``$DIFFALIGN_WEIGHTS_DIR`` to exercise the checkpoint-loading paths offline.
"""

import pytest
import torch

from diffalign.rewards import Samples, load
from diffalign.rewards.weights import WeightsNotFoundError

RANGES = {  # name -> (kwargs, plausible score range for a smooth random image / noise clip)
    "clip_score": ({}, (-0.2, 0.5)),
    "aesthetic": ({}, (1.0, 9.0)),
    "pickscore": ({}, (5.0, 30.0)),
    "hpsv2": ({}, (0.0, 0.45)),
    "image_reward": ({}, (-3.5, 3.5)),
    "clap": ({}, (-1.0, 1.0)),
}


@pytest.mark.weights
@pytest.mark.parametrize("name", sorted(RANGES))
def test_published_weights_load_and_score_in_range(name, no_network):
    kwargs, (lo, hi) = RANGES[name]
    try:
        with no_network():
            reward = load(name, weights="auto", **kwargs)
    except WeightsNotFoundError as err:
        pytest.skip(str(err))
    gen = torch.Generator().manual_seed(0)
    if reward.spec.modality == "image":
        x = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=gen), size=256, mode="bilinear")
        samples = Samples(x, ["a photo of a cat", "an oil painting of a harbour at dusk"])
    else:
        samples = Samples(torch.rand(2, 1, 48000, generator=gen) * 0.2 - 0.1, ["white noise", "a dog barks"], sample_rate=48000)
    with no_network():
        scores = reward(samples).scores
    assert torch.isfinite(scores).all() and ((scores >= lo) & (scores <= hi)).all(), scores
