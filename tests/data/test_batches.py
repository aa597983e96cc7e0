"""Pair batches: cached and uncached paths agree; the family's conditioning has 2B rows."""

import torch

from diffalign.train.offline import DiffusionTrainer


def test_cached_and_uncached_batches_agree(dcfg):
    data = {"caption_dropout": 0.5, "hflip": True, "ties": "half"}
    cached = DiffusionTrainer(dcfg(data=data)).batcher
    plain = DiffusionTrainer(dcfg(data={**data, "cache": False})).batcher
    assert cached.cache is not None and plain.cache is None and cached.positions == plain.positions
    for epoch in (0, 1):
        x, y = cached.make_batch([0, 3, 5, 11], epoch), plain.make_batch([0, 3, 5, 11], epoch)
        for f in ("chosen", "rejected", "label"):
            torch.testing.assert_close(getattr(x, f), getattr(y, f), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x.cond.encoder_hidden_states, y.cond.encoder_hidden_states, rtol=1e-4, atol=1e-5)
    assert sorted(set(x.label.tolist())) == [0.5, 1.0]


def test_sd_batch_conditioning_and_caption_dropout(dcfg):
    b = DiffusionTrainer(dcfg(data={"caption_dropout": 0.99})).batcher
    batch = b.make_batch([0, 1, 2], 0)
    c = batch.cond
    assert c.encoder_hidden_states.shape == (6, 16, 16) and c.text_embeds is None and c.time_ids is None  # sd
    assert torch.equal(c.encoder_hidden_states[:3], c.encoder_hidden_states[3:])  # the prompt twice: [chosen; rejected]
    empty = b.empty["encoder_hidden_states"]
    assert all(torch.equal(c.encoder_hidden_states[i], empty[0]) for i in range(3))  # dropped: the pipeline's ""
    assert batch.x0().shape == (6, 4, 8, 8) and batch.index.tolist() == [0, 1, 2]
