"""The latent cache: resumable shards, per-prompt text tables."""

import pytest
import torch

from diffalign.data.cache import LatentCache


def test_cache_resumes_an_interrupted_pass(tmp_path):
    calls = []

    def encode(positions, fail_at=None):
        calls.append(positions[0])
        if fail_at is not None and positions[0] >= fail_at:
            raise KeyboardInterrupt  # a kill in the middle of the pass
        k = len(positions)
        return {"position": torch.tensor(positions), "chosen": torch.arange(k * 4.0).view(k, 4) + positions[0],
                "prompt_index": torch.zeros(k, dtype=torch.long), "u_encoder_hidden_states": torch.ones(1, 2, 3)}, []

    cache = LatentCache(tmp_path / "c", n_pairs=10, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        cache.build(lambda p: encode(p, fail_at=8), batch=2, disable=True)
    assert cache.shard_path(0).is_file() and cache.shard_path(1).is_file() and not cache.shard_path(2).is_file()
    assert not cache.complete and not list((tmp_path / "c").glob(".tmp-*"))
    calls.clear()
    cache.build(encode, batch=2, disable=True)
    assert calls == [8] and cache.complete  # only the missing shard was encoded
    again = LatentCache(tmp_path / "c", n_pairs=10, shard_size=4)
    assert again.positions() == list(range(10))
    got = again.get([9, 0], ["chosen", "u_encoder_hidden_states"])
    assert torch.equal(got["chosen"][0], torch.arange(4.0, 8.0) + 8) and got["u_encoder_hidden_states"].shape == (2, 2, 3)


def test_pair_shard_schema_and_flipped_reads(tmp_path):
    from diffalign.data.cache import FLIP, IMAGE_TENSORS, TEXT_PREFIX, pair_shard

    k = 3
    plain = tuple(torch.full((k, 2), float(i)) for i in range(4))
    flipped = tuple(v + 10 for v in plain)
    shard = pair_shard([0, 1, 2], {"": plain, FLIP: flipped}, ["b", "a", "b"],
                       lambda u: {"encoder_hidden_states": torch.arange(float(len(u)))[:, None].repeat(1, 3)},
                       torch.float16)
    assert set(shard) == {"position", "prompt_index", *IMAGE_TENSORS, *(n + FLIP for n in IMAGE_TENSORS),
                          TEXT_PREFIX + "encoder_hidden_states"}
    assert shard["chosen"].dtype == torch.float16 and shard["time_ids_chosen"].dtype == torch.float32
    assert shard["prompt_index"].tolist() == [1, 0, 1]  # sorted unique prompts: a, b
    cache = LatentCache(tmp_path / "c", n_pairs=3, shard_size=4)
    cache.build(lambda positions: (shard, []), batch=3, disable=True)
    got = cache.pairs([2, 0], [True, False], ("encoder_hidden_states",))
    assert got["chosen"][:, 0].tolist() == [10.0, 0.0]  # pair 2 read flipped, pair 0 plain
    assert got["time_ids_rejected"][:, 0].tolist() == [13.0, 3.0]
    assert got["encoder_hidden_states"][:, 0].tolist() == [1.0, 1.0]  # both are prompt "b"
