"""The frozen U-Net encoder of NCP: the tapped blocks, early exit, gradients to the input only."""

import pytest
import torch

from diffalign.models.denoiser import Conditioning
from diffalign.models.features import UNetFeatures


@pytest.fixture(scope="module")
def unet(sd_path):
    from diffalign.models.families import load_components

    return load_components(sd_path).unet


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 600]), Conditioning(torch.randn(2, 16, 16, generator=g))


def test_levels_are_the_blocks_of_a_full_forward(unet):
    z, s, cond = _inputs()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: seen.__setitem__(k, o[0] if isinstance(o, tuple) else o))
             for k, m in [("conv_in", unet.conv_in), ("down0", unet.down_blocks[0]), ("down1", unet.down_blocks[1]),
                          ("mid", unet.mid_block)]]
    with torch.no_grad():
        unet(z, s, **cond.unet_kwargs())
    for h in hooks:
        h.remove()
    with torch.no_grad():
        down = UNetFeatures(unet, "down")(z, s, cond)
        mid = UNetFeatures(unet, "mid")(z, s, cond)
        multi = UNetFeatures(unet, "multi")(z, s, cond)
    assert len(down) == 1 and torch.equal(down[0], seen["down1"])
    assert len(mid) == 1 and torch.equal(mid[0], seen["mid"])
    assert [f.shape for f in multi] == [seen[k].shape for k in ("conv_in", "down0", "down1", "mid")]
    with pytest.raises(ValueError, match="space.level must be one of"):
        UNetFeatures(unet, "up")


def test_gradients_reach_the_input_not_the_frozen_copy(unet):
    enc = UNetFeatures(unet, "mid")
    assert enc.unet is not unet and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.unet.training  # stays in eval mode
    z, s, cond = _inputs()
    z.requires_grad_(True)
    enc(z, s, cond)[0].pow(2).mean().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert all(p.grad is None for p in enc.parameters())
