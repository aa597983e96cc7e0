"""DDIM-InPO: inverted noise per image, shared t per pair, per-sample results at any batch size, log 2."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffalign.data.batches import PairBatch
from diffalign.losses import LossParams
from diffalign.methods import method_class
from diffalign.methods.inpo import InPO
from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser
from tests.helpers import recording

B = 4
BETA = 2000.0


@pytest.fixture(scope="module")
def comp(sd_path):
    """The tiny SD with a LoRA whose B = 0 (policy = reference) — perturbed per test where needed."""
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    c = load_components(sd_path)
    add_lora(c.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "true")
    return c


def _batch(seed=3, b=B):
    g = torch.Generator().manual_seed(seed)
    chosen, rejected = torch.randn(b, 4, 8, 8, generator=g), torch.randn(b, 4, 8, 8, generator=g)
    return PairBatch(chosen, rejected, Conditioning(torch.randn(b, 16, 16, generator=g).repeat(2, 1, 1)))


def _perturbed(comp):
    import copy

    unet = copy.deepcopy(comp.unet)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    return unet


def test_registry_needs_and_config(comp):
    assert method_class("inpo") is InPO and InPO.class_needs() == {"inversion"}
    m = InPO(comp.scheduler)
    assert m.needs() == {"reference", "inversion"} and m.inversion_steps == 10
    from diffalign.train import load_config

    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs/toy/inpo.yaml")
    assert cfg.method.name == "inpo" and cfg.method.inversion_steps == 10
    with pytest.raises(ValueError, match="inversion_steps must be ≥ 1"):
        InPO.Config(inversion_steps=0).validate()


def test_step0_loss_is_log2_when_policy_equals_reference(comp):
    m = InPO(comp.scheduler, params=LossParams(beta=BETA))
    out = m.compute_loss(_batch(), Denoiser(comp.unet), AdapterOffDenoiser(comp.unet))
    assert abs(float(out.loss) - math.log(2)) < 1e-6 and float(out.metrics["implicit_acc"]) == 0.0


def test_loss_is_diffusion_dpo_with_the_inverted_noise(comp):
    """By hand: ε* from the inversion, then Salesforce's −logsigmoid(−(β/2)(Δθ − Δref))."""
    unet = _perturbed(comp)
    pol, ref = Denoiser(unet), AdapterOffDenoiser(unet)
    m = InPO(comp.scheduler, params=LossParams(beta=BETA))
    batch = _batch()
    torch.manual_seed(7)
    out = m.compute_loss(batch, pol, ref)
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (B,)).repeat(2)
    eps = m.inverted_noise(batch, t, pol)
    x0 = batch.x0()
    x_t = comp.scheduler.add_noise(x0, eps, t)
    ehs = batch.cond.encoder_hidden_states
    with torch.no_grad():
        err = (unet(x_t, t, ehs).sample - eps).pow(2).mean(dim=[1, 2, 3])
        err_ref = (ref(x_t, t, batch.cond) - eps).pow(2).mean(dim=[1, 2, 3])
    inside = -0.5 * BETA * ((err[:B] - err[B:]) - (err_ref[:B] - err_ref[B:]))
    assert inside.abs().max() > 1e-3  # a non-trivial check
    torch.testing.assert_close(out.loss.detach(), -F.logsigmoid(inside).mean(), rtol=1e-5, atol=1e-6)


def test_inverted_noise_is_per_sample_identical_at_batch_1_and_batch_4(comp):
    unet = _perturbed(comp)
    m = InPO(comp.scheduler)
    batch = _batch()
    t = torch.tensor([0, 999, 250, 251]).repeat(2)  # mixed levels in one batch
    four = m.inverted_noise(batch, t, Denoiser(unet))
    ones = []
    for i in range(B):
        one = PairBatch(batch.chosen[i : i + 1], batch.rejected[i : i + 1], batch.cond.rows(torch.tensor([i, B + i])))
        ones.append(m.inverted_noise(one, t[[i, B + i]], Denoiser(unet)))
    single = torch.cat([o[:1] for o in ones] + [o[1:] for o in ones])
    torch.testing.assert_close(four, single, rtol=1e-5, atol=1e-5)  # U-Net round-off across batch sizes only
    # inverting every row to t[0] (the public code's timesteps[0]) gives other rows another noise
    wrong = m.inverted_noise(batch, t[:1].expand(2 * B), Denoiser(unet))
    assert (wrong[1:B] - four[1:B]).abs().amax(dim=(1, 2, 3)).min() > 0.05
    assert 0.05 < float(four.std()) < 5 and not torch.equal(four[:B], four[B:])  # one noise per image


def test_shared_timestep_and_identical_images_see_identical_inputs(comp):
    seen = []

    same = _batch()
    same.rejected = same.chosen.clone()
    # the loss forward only; the inversion runs under no_grad
    InPO(comp.scheduler).compute_loss(same, recording(comp.unet, seen, grad_only=True), AdapterOffDenoiser(comp.unet))
    assert len(seen) == 1
    x_t, t = seen[0]  # the policy's loss forward on the 2B noisy rows
    assert x_t.shape[0] == 2 * B and torch.equal(t[:B], t[B:])
    torch.testing.assert_close(x_t[:B], x_t[B:], rtol=0, atol=1e-6)  # same image, same t ⇒ same inverted latent


def test_a_step_changes_the_policy_and_leaves_the_reference_unchanged(sd_path):
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    c = load_components(sd_path)
    add_lora(c.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    unet, ref = c.unet, AdapterOffDenoiser(c.unet)
    lora = {n: p.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    x = (torch.randn(2, 4, 8, 8), torch.tensor([100, 800]), Conditioning(torch.randn(2, 16, 16)))
    ref0 = ref(*x)
    opt = torch.optim.SGD([p for p in unet.parameters() if p.requires_grad], lr=1.0)
    InPO(c.scheduler).compute_loss(_batch(), Denoiser(unet), ref).loss.backward()
    opt.step()
    assert all(not torch.equal(p, lora[n]) for n, p in unet.named_parameters() if "lora_B" in n)
    assert torch.equal(ref(*x), ref0)


def test_inpo_trains_in_the_offline_trainer(dcfg):
    from diffalign.train.offline import DiffusionTrainer

    tr = DiffusionTrainer(dcfg(method={"name": "inpo", "inversion_steps": 4}, train={"max_steps": 2}))
    assert isinstance(tr.method, InPO) and tr.method.inversion_steps == 4
    last = tr.train()
    assert math.isfinite(last["loss"]) and "implicit_acc" in last
