"""Conditioning and denoiser wrappers."""

import dataclasses
from unittest.mock import ANY

import pytest
import torch

from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser, FrozenDenoiser


@pytest.fixture(scope="module")
def parts(sd_path):
    from diffalign.models.families import load_components

    return load_components(sd_path)


def test_frozen_denoiser_casts_inputs(parts):
    import copy

    ref = copy.deepcopy(parts.unet).to(torch.bfloat16)
    cond = Conditioning(torch.randn(2, 16, 16))
    y = FrozenDenoiser(ref, torch.bfloat16)(torch.randn(2, 4, 8, 8), torch.tensor([5, 6]), cond)
    assert y.dtype == torch.bfloat16 and not y.requires_grad


def test_conditioning_casts_moves_and_repeats_every_field():
    c = Conditioning(*(torch.randn(2, 3 + i) for i in range(len(dataclasses.fields(Conditioning)))))
    h = c.to(dtype=torch.float16)
    assert all(getattr(h, f.name).dtype == torch.float16 for f in dataclasses.fields(c))  # no field left behind
    r = c.repeat(2)
    assert all(getattr(r, f.name).shape[0] == 4 for f in dataclasses.fields(c))
    assert torch.equal(r.text_embeds[2:], c.text_embeds)
    assert c.rows(torch.tensor([1])).time_ids.shape == (1, 5)
    kw = c.unet_kwargs()
    assert kw["added_cond_kwargs"]["time_ids"] is c.time_ids and kw["encoder_hidden_states"] is c.encoder_hidden_states
    assert {"class_labels", "encoder_hidden_states_1", "encoder_attention_mask_1"} <= set(kw)
    assert Conditioning(torch.randn(2, 3, 4)).unet_kwargs() == {"encoder_hidden_states": ANY}  # only what is set
    assert Conditioning(class_labels=torch.randn(2, 8)).unet_kwargs()["encoder_hidden_states"] is None  # positional


def test_adapter_off_is_the_base_model(parts):
    import copy

    from diffalign.models.lora import add_lora

    unet = copy.deepcopy(parts.unet)
    x = (torch.randn(2, 4, 8, 8), torch.tensor([5, 600]), Conditioning(torch.randn(2, 16, 16)))
    with torch.no_grad():
        base = Denoiser(unet)(*x)
    add_lora(unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
        assert (Denoiser(unet)(*x) - base).abs().max() > 1e-4
    torch.testing.assert_close(AdapterOffDenoiser(unet)(*x), base, rtol=0, atol=0)
    assert (Denoiser(unet)(*x) - base).abs().max() > 1e-4  # adapters are back on after the call


def test_base_view_shares_the_weights_and_equals_adapters_off(parts):
    import copy

    from peft.tuners.tuners_utils import BaseTunerLayer

    from diffalign.models.denoiser import base_view
    from diffalign.models.lora import add_lora

    unet = copy.deepcopy(parts.unet)
    assert base_view(unet) is None  # no adapters: nothing to stand in for
    add_lora(unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    view = base_view(unet)
    own = {id(t) for t in [*unet.parameters(), *unet.buffers()]}
    assert all(id(t) in own for t in view.parameters()) and not any(isinstance(m, BaseTunerLayer) for m in view.modules())
    assert sum(p.numel() for p in view.parameters()) == sum(p.numel() for p in parts.unet.parameters())
    x = (torch.randn(2, 4, 8, 8), torch.tensor([5, 600]), Conditioning(torch.randn(2, 16, 16)))
    toggled, viewed = AdapterOffDenoiser(unet, view=False), AdapterOffDenoiser(unet)
    torch.testing.assert_close(viewed(*x), toggled(*x), rtol=0, atol=0)
    assert viewed.separate() and not toggled.separate()  # only the view may run beside the policy's forward
    assert viewed._view is not None and all(p.requires_grad for n, p in unet.named_parameters() if "lora_" in n)
    with torch.no_grad():  # the view reads the policy's own tensors: an in-place change shows in both
        unet.conv_in.weight.mul_(0.5)
    torch.testing.assert_close(viewed(*x), toggled(*x), rtol=0, atol=0)
    for m in unet.modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
    assert base_view(unet) is None  # merged adapters live in the base weights: only toggling unmerges them
