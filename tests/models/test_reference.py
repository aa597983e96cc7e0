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
    with pytest.raises(ValueError, match="unknown reference strategy 'lagrange'"):
        make_reference("lagrange", unet)


class _Policy(torch.nn.Module):
    """A frozen base and a trainable adapter weight: what the moving strategies follow."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Parameter(torch.ones(2), requires_grad=False)
        self.adapter = torch.nn.Parameter(torch.zeros(2))


def _set(policy, v):
    with torch.no_grad():
        policy.adapter.fill_(v)


def test_periodic_copy_and_ema_follow_the_policy():
    from diffalign.models.reference import EMA, PeriodicCopy

    pol = _Policy()
    per, ema = PeriodicCopy(pol, every=2), EMA(pol, decay=0.75)
    for step, v in enumerate([1.0, 2.0, 3.0], start=1):
        _set(pol, v)
        per.update(step, pol)
        ema.update(step, pol)
    assert per.unet.adapter.tolist() == [2.0, 2.0]  # copied at step 2 only
    by_hand = 0.0
    for v in (1.0, 2.0, 3.0):
        by_hand = 0.75 * by_hand + 0.25 * v
    assert ema.unet.adapter[0].item() == pytest.approx(by_hand) and not ema.unet.adapter.requires_grad
    with pytest.raises(ValueError, match="ema_decay must be in"):
        EMA(pol, decay=1.0)


def test_checkpoint_pool_keeps_the_initial_snapshot_caps_its_size_and_resumes():
    from diffalign.models.reference import CheckpointPool

    pol = _Policy()
    pool = CheckpointPool(pol, every=1, size=3, seed=0)
    for step in range(1, 6):
        _set(pol, float(step))
        pool.update(step, pol)
    assert [s for s, _ in pool.pool] == [0, 4, 5] and len(pool.pool) <= 3  # initial kept, oldest later ones dropped
    draws = [pool.draw() for _ in range(60)]
    assert set(draws) == {0, 4, 5} and pool.unet.adapter[0].item() == float(draws[-1])
    state, tensors = pool.state_dict(), pool.state_tensors()
    again = CheckpointPool(_Policy(), every=1, size=3, seed=123)
    again.load_state_dict(state)
    again.load_state_tensors(tensors)
    assert [pool.draw() for _ in range(20)] == [again.draw() for _ in range(20)]  # same pool, same generator


def test_reference_overlap_runs_both_sides_and_gives_the_threads_back():
    import threading

    from diffalign.models.reference import ReferenceOverlap

    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="at least 2 CPU threads"):
        ReferenceOverlap(1)
    ov = ReferenceOverlap(3)
    seen = {}

    def policy():
        seen["policy"] = (threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled())
        return torch.ones(2, requires_grad=True) * 2

    def reference():
        with torch.no_grad():
            seen["reference"] = (threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled())
            return torch.ones(2) * 3

    torch.set_num_threads(3)
    out, ref = ov.run(policy, reference)
    assert out.requires_grad and torch.equal(ref, torch.full((2,), 3.0))
    assert seen["policy"][1:] == (2, True) and seen["reference"][1:] == (1, False)
    assert seen["reference"][0].startswith("reference") and seen["policy"][0] != seen["reference"][0]
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="boom"):  # an error on either side surfaces; threads still restored
        ov.run(policy, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert torch.get_num_threads() == 3
    torch.set_num_threads(before)
