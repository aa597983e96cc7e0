"""Weight resolution (path → $DIFFALIGN_WEIGHTS_DIR → HF cache → one-line error) and checkpoint formats."""

import pytest
import torch

from diffalign.rewards import load
from diffalign.rewards.weights import WeightsNotFoundError, load_state_dict, resolve_weights

REAL_WEIGHT_REWARDS = {
    "clip_score": "open_clip_model.safetensors",
    "aesthetic": "sac+logos+ava1-l14-linearMSE.pth",
    "pickscore": "model.safetensors",
    "hpsv2": "HPS_v2.1_compressed.pt",
    "image_reward": "ImageReward.pt",
    "clap": "model.safetensors",
}


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("DIFFALIGN_WEIGHTS_DIR", raising=False)
    return tmp_path / "hub"


@pytest.mark.parametrize("name", sorted(REAL_WEIGHT_REWARDS))
def test_missing_weights_fail_with_one_line_naming_the_file(name, empty_hf_cache, no_network):
    with no_network(), pytest.raises(WeightsNotFoundError) as err:
        load(name, weights="auto")
    message = str(err.value)
    assert "\n" not in message and REAL_WEIGHT_REWARDS[name] in message and name in message, message


def test_missing_explicit_path_names_it(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist") as err:
        load("hpsv2", weights=tmp_path / "nope.pt")
    assert "\n" not in str(err.value) and "nope.pt" in str(err.value)


def test_resolution_order_env_dir_then_hf_cache(tmp_path, empty_hf_cache, monkeypatch):
    artifact = "hf://org/repo/weights.safetensors"
    snap = empty_hf_cache / "models--org--repo" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "weights.safetensors").write_bytes(b"x")
    (empty_hf_cache / "models--org--repo" / "refs").mkdir()
    (empty_hf_cache / "models--org--repo" / "refs" / "main").write_text("abc123")
    assert resolve_weights("auto", "r", [artifact]) == snap / "weights.safetensors"
    local = tmp_path / "org" / "repo"
    local.mkdir(parents=True)
    (local / "weights.safetensors").write_bytes(b"y")
    monkeypatch.setenv("DIFFALIGN_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights("auto", "r", [artifact]) == local / "weights.safetensors"
    assert resolve_weights(local / "weights.safetensors", "r", [artifact]) == local / "weights.safetensors"


def test_load_state_dict_is_weights_only(tmp_path):
    torch.save({"state_dict": {"module.a": torch.ones(2)}}, tmp_path / "ok.pt")
    assert list(load_state_dict(tmp_path / "ok.pt", key="state_dict")) == ["a"]

    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    torch.save({"a": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_state_dict(tmp_path / "evil.pt")


def test_laion_clap_checkpoint_needs_trust_pickle(tmp_path):
    pytest.importorskip("laion_clap")
    (tmp_path / "630k-audioset-best.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="trust_pickle=True"):
        load("clap", backend="laion_clap", weights=tmp_path / "630k-audioset-best.pt")


def test_image_reward_checkpoint_layout_loads(tmp_path):
    from diffalign.rewards.image.image_reward import ImageRewardModel, _load, build

    tiny = build().model
    state = {k: v.clone() + 1 for k, v in tiny.state_dict().items()}
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(64)[None]  # old-transformers buffer
    state["blip.vision_proj.weight"] = torch.zeros(1)  # BLIP heads ImageReward does not use
    torch.save(state, tmp_path / "ImageReward.pt")
    fresh = ImageRewardModel(
        {"image_size": 32, "patch_size": 16, "dim": 32, "depth": 2, "heads": 2},
        {k: getattr(tiny.blip.text_encoder.config, k) for k in ("vocab_size", "hidden_size", "encoder_hidden_size",
         "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")},
    )
    _load(fresh, tmp_path / "ImageReward.pt")
    assert torch.equal(fresh.mlp.layers[0].weight, state["mlp.layers.0.weight"])
    del state["mlp.layers.7.bias"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(KeyError, match="lacks 1 parameters"):
        _load(fresh, tmp_path / "broken.pt")


def test_aesthetic_head_matches_released_layout():
    from diffalign.rewards.image.aesthetic import AestheticHead

    keys = set(AestheticHead(768).state_dict())
    assert keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
