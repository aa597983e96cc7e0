"""Model families as objects: detection, loading, prompt and sample encoding, conditioning, outputs."""

import pytest
import torch

from diffalign.models.families import FAMILIES, detect_family, get_family, load_components


@pytest.fixture(scope="module")
def sd(sd_path):
    return load_components(sd_path)


@pytest.fixture(scope="module")
def sdxl(sdxl_path):
    return load_components(sdxl_path)


def test_detection_and_registry(sd_path, sdxl_path, tmp_path):
    assert detect_family(sd_path) == "sd" and detect_family(sdxl_path) == "sdxl"
    assert set(FAMILIES) == {"sd", "sdxl", "audioldm", "audioldm2"}
    with pytest.raises(ValueError, match="model.family must be one of"):
        get_family("flux")
    with pytest.raises(FileNotFoundError, match="not a diffusers pipeline folder"):
        detect_family(tmp_path)


def test_prompt_encodings_and_empty_conditioning(sd, sdxl):
    e = sd.family.encode_prompts(sd, ["a red circle", "x"])
    assert set(e) == set(sd.family.text_fields) == {"encoder_hidden_states"} and e["encoder_hidden_states"].shape == (2, 16, 16)
    x = sdxl.family.encode_prompts(sdxl, ["a red circle"])
    assert set(x) == {"encoder_hidden_states", "text_embeds"} and x["encoder_hidden_states"].shape == (1, 16, 32)
    assert float(sd.family.empty_conditioning(sd)["encoder_hidden_states"].abs().sum()) > 0
    assert all(float(v.abs().sum()) == 0 for v in sdxl.family.empty_conditioning(sdxl).values())  # force_zeros


def test_conditioning_and_samples(sd, sdxl):
    tids = torch.tensor([[16.0, 16, 0, 0, 16, 16]] * 2)
    c = sdxl.family.conditioning({"encoder_hidden_states": torch.zeros(2, 16, 32), "text_embeds": torch.zeros(2, 16)}, tids)
    assert c.time_ids is tids and c.unet_kwargs()["added_cond_kwargs"]["text_embeds"].shape == (2, 16)
    with pytest.raises(ValueError, match="sdxl conditioning needs each image's time ids"):
        sdxl.family.conditioning({"encoder_hidden_states": torch.zeros(2, 16, 32), "text_embeds": torch.zeros(2, 16)}, None)
    assert sd.family.conditioning({"encoder_hidden_states": torch.zeros(2, 16, 16)}, tids).time_ids is None
    px = torch.rand(2, 3, 16, 16) * 2 - 1
    lat = sd.family.encode_samples(sd, px)
    assert lat.shape == (2, 4, 8, 8) and lat.dtype == torch.float32
    img = sd.family.decode_samples(sd, lat)
    assert img.shape == (2, 3, 16, 16) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert sd.family.pipeline_class().__name__ == "StableDiffusionPipeline"
    assert sdxl.family.pipeline_class().__name__ == "StableDiffusionXLPipeline"
