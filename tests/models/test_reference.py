"""Reference strategies: the resolution rules, frozen copies, and what each strategy hands the method."""

import pytest
import torch

from diffalign.models.reference import (
    STRATEGIES,
    AdapterOff,
    FrozenCopy,
    NoReference,
    frozen_copy,
    make_reference,
    resolve_strategy,
)


def test_resolution_rules():
    kw = dict(known=STRATEGIES, auto="frozen_copy")
    assert resolve_strategy("frozen_copy", needs_reference=False, has_lora=True, **kw) == "none"
    assert resolve_strategy("auto", needs_reference=True, has_lora=False, **kw) == "frozen_copy"
    assert resolve_strategy("adapter_off", needs_reference=True, has_lora=True, **kw) == "adapter_off"
    with pytest.raises(ValueError, match="adapter_off needs model.lora"):
        resolve_strategy("adapter_off", needs_reference=True, has_lora=False, **kw)
    with pytest.raises(ValueError, match=r"reference.strategy must be one of \['auto', 'adapter_off', 'frozen_copy'\]"):
        resolve_strategy("precomputed", needs_reference=True, has_lora=False, **kw)


def test_frozen_copy_is_frozen_in_its_dtype_and_independent():
    m = torch.nn.Linear(3, 2)
    ref = frozen_copy(m, torch.bfloat16)
    assert ref.weight.dtype == torch.bfloat16 and not ref.weight.requires_grad and not ref.training
    with torch.no_grad():
        m.weight.add_(1.0)
    assert not torch.equal(ref.weight.float(), m.weight)  # a copy, not a view


def test_strategies_hand_out_their_denoisers(sd_path):
    from diffalign.models.denoiser import Conditioning
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    unet = load_components(sd_path).unet
    x = (torch.randn(2, 4, 8, 8), torch.tensor([3, 900]), Conditioning(torch.randn(2, 16, 16)))
    frozen = make_reference("frozen_copy", unet)
    assert isinstance(frozen, FrozenCopy) and frozen.unet is not unet and frozen.state_dict() == {}
    before = frozen.denoiser()(*x)
    add_lora(unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    off = make_reference("adapter_off", unet)
    assert isinstance(off, AdapterOff)
    torch.testing.assert_close(off.denoiser()(*x), before, rtol=1e-6, atol=1e-6)  # adapters off = the initial U-Net
    assert isinstance(make_reference("none", unet), NoReference) and make_reference("none", unet).denoiser() is None
    with pytest.raises(ValueError, match="unknown reference strategy 'ema'"):
        make_reference("ema", unet)
