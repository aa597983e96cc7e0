"""The diffusion adapter of the loss core and the Diffusion-DPO method, on a tiny real U-Net."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffalign.losses import KINDS, LossParams
from diffalign.losses.denoising import (
    core_params,
    denoising_target,
    min_snr_weight,
    noise_pairs,
    per_sample_error,
    snr,
)
from diffalign.methods import METHODS, method_class
from diffalign.methods.base import AdapterOffDenoiser, Conditioning, Denoiser, FrozenDenoiser, PairBatch
from diffalign.methods.diffusion_dpo import DiffusionDPO

B = 3
BETA = 5000.0


@pytest.fixture(scope="module")
def parts(sd_path):
    """U-Net with a perturbed LoRA (policy ≠ reference) + the training scheduler."""
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in comp.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    return comp


def _batch(label=None):
    g = torch.Generator().manual_seed(3)
    return PairBatch(torch.randn(B, 4, 8, 8, generator=g), torch.randn(B, 4, 8, 8, generator=g),
                     torch.randn(B, 16, 16, generator=g), label=label)


def test_registry_and_declared_needs(parts):
    assert method_class("diffusion_dpo") is DiffusionDPO and "diffusion_dpo" in METHODS
    m = DiffusionDPO(parts.scheduler)
    assert m.needs_reference and not (m.needs_rollouts or m.needs_reward or m.needs_inversion)
    assert not DiffusionDPO(parts.scheduler, kinds="simpo").needs_reference  # reference-free kind
    with pytest.raises(ValueError, match="unknown loss kind 'sigmod'.*did you mean 'sigmoid'"):
        DiffusionDPO(parts.scheduler, kinds="sigmod")
    with pytest.raises(ValueError, match="need a reference denoiser"):
        DiffusionDPO(parts.scheduler).compute_loss(_batch(), Denoiser(parts.unet), None)


def test_beta_convention_is_one_halving():
    p = LossParams(beta=BETA, label_smoothing=0.1)
    q = core_params(p)
    assert q.beta == BETA / 2 and q.label_smoothing == 0.1 and p.beta == BETA


def test_equals_salesforce_form_on_a_tiny_unet(parts):
    """−logsigmoid(−0.5·β·(model_diff − ref_diff)).mean(), Salesforce train.py L1142."""
    unet, sch = parts.unet, parts.scheduler
    batch = _batch()
    method = DiffusionDPO(sch, "epsilon", "sigmoid", LossParams(beta=BETA))
    torch.manual_seed(7)
    out = method.compute_loss(batch, Denoiser(unet), AdapterOffDenoiser(unet))
    # the same draws, by hand: t then ε, shared by the pair
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (B,)).repeat(2)
    noise = torch.randn(B, 4, 8, 8).repeat(2, 1, 1, 1)
    x0 = torch.cat([batch.chosen, batch.rejected])
    x_t = sch.add_noise(x0, noise, t)
    ehs = batch.encoder_hidden_states.repeat(2, 1, 1)
    with torch.no_grad():
        model_pred = unet(x_t, t, ehs).sample
        unet.disable_adapters()
        ref_pred = unet(x_t, t, ehs).sample
        unet.enable_adapters()
    model_losses = (model_pred.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
    ref_losses = (ref_pred.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
    model_diff = model_losses[:B] - model_losses[B:]
    ref_diff = ref_losses[:B] - ref_losses[B:]
    expected = -F.logsigmoid(-0.5 * BETA * (model_diff - ref_diff)).mean()
    assert (model_diff - ref_diff).abs().max() > 1e-5  # policy ≠ reference: a non-trivial check
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-5, atol=1e-6)
    acc = ((-0.5 * BETA * (model_diff - ref_diff)) > 0).float().mean()
    assert float(out.metrics["implicit_acc"]) == float(acc)


LOG2_KINDS = ["sigmoid", "cdpo", "robust", "f_reverse_kl", "f_forward_kl", "f_js", "f_alpha", "dpop", "aot",
              "sigmoid_norm"]


@pytest.fixture(scope="module")
def equal_parts(sd_path):
    """U-Net whose LoRA starts at B = 0: policy = reference."""
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "true")
    return comp


@pytest.mark.parametrize("kind", LOG2_KINDS)
def test_step0_loss_is_log2_when_policy_equals_reference(equal_parts, kind):
    comp = equal_parts
    m = DiffusionDPO(comp.scheduler, kinds=kind, params=LossParams(beta=BETA, label_smoothing=0.1))
    with torch.no_grad():
        out = m.compute_loss(_batch(), Denoiser(comp.unet), AdapterOffDenoiser(comp.unet))
    assert KINDS[kind].needs >= {"reference"}
    assert abs(float(out.loss) - math.log(2)) < 1e-6


def test_hinge_and_ipo_read_as_the_diffusers_script_meant(parts):
    """diffusers SD1.5: hinge relu(1 − β_d·(Δref − Δθ)), ipo ((Δref − Δθ) − 1/(2β_d))², β_d = β/2."""
    unet, sch = parts.unet, parts.scheduler
    outs = {}
    for kind in ("sigmoid", "hinge", "ipo"):
        torch.manual_seed(11)
        outs[kind] = DiffusionDPO(sch, kinds=kind, params=LossParams(beta=BETA)).compute_loss(
            _batch(), Denoiser(unet), AdapterOffDenoiser(unet))
    # recover logits = Δref − Δθ from the sigmoid per-pair losses: ℓ = softplus(−β_d·logits)
    bd = BETA / 2
    logits = -torch.log(torch.expm1(outs["sigmoid"].per_pair.double())) / bd
    torch.testing.assert_close(outs["hinge"].per_pair.double(), torch.relu(1 - bd * logits), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs["ipo"].per_pair.double(), (logits - 1 / (2 * bd)) ** 2, rtol=1e-4, atol=1e-9)


def test_noise_and_timestep_are_shared_within_each_pair(parts):
    sch = parts.scheduler
    chosen, rejected = torch.randn(B, 4, 8, 8), torch.randn(B, 4, 8, 8)
    n = noise_pairs(sch, chosen, rejected, (0, 1000), "epsilon")
    assert torch.equal(n.t[:B], n.t[B:]) and torch.equal(n.noise[:B], n.noise[B:])
    assert len(set(n.t[:B].tolist())) > 1 or B == 1  # but not shared across pairs
    assert not torch.equal(n.noise[0], n.noise[1])

    seen = []

    class Recorder(Denoiser):
        def __call__(self, x_t, t, cond):
            seen.append((x_t.clone(), t.clone()))
            return super().__call__(x_t, t, cond)

    same = _batch()
    same.rejected = same.chosen.clone()  # identical images ⇒ identical noisy inputs iff (t, ε) shared
    DiffusionDPO(sch).compute_loss(same, Recorder(parts.unet), Recorder(parts.unet))
    for x_t, t in seen:
        assert torch.equal(x_t[:B], x_t[B:]) and torch.equal(t[:B], t[B:])


def test_targets_and_errors(parts):
    sch = parts.scheduler
    x0, eps, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.tensor([0, 10, 500, 999])
    assert torch.equal(denoising_target(sch, x0, eps, t, "epsilon"), eps)
    assert torch.equal(denoising_target(sch, x0, eps, t, "sample"), x0)
    a = sch.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(denoising_target(sch, x0, eps, t, "v_prediction"), a.sqrt() * eps - (1 - a).sqrt() * x0)
    with pytest.raises(ValueError, match="prediction_type"):
        denoising_target(sch, x0, eps, t, "flow")
    e = per_sample_error(x0.half(), eps.half())
    assert e.dtype == torch.float32 and e.shape == (4,)
    torch.testing.assert_close(e, ((x0.half().float() - eps.half().float()) ** 2).mean(dim=(1, 2, 3)))
    s = snr(sch, t)
    torch.testing.assert_close(min_snr_weight(sch, t, 5.0, "epsilon"), torch.clamp(s, max=5) / s)
    torch.testing.assert_close(min_snr_weight(sch, t, 5.0, "v_prediction"), torch.clamp(s, max=5) / (s + 1))


def test_v_prediction_and_snr_weighting_train(parts):
    from diffusers import DDPMScheduler

    vsch = DDPMScheduler.from_config(parts.scheduler.config, prediction_type="v_prediction")
    m = DiffusionDPO(vsch, "v_prediction", snr_gamma=5.0, t_range=(300, 1000))
    out = m.compute_loss(_batch(), Denoiser(parts.unet), AdapterOffDenoiser(parts.unet))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.unet.parameters() if p.requires_grad)
    parts.unet.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="timestep range"):
        DiffusionDPO(vsch, t_range=(0, 2000))


def test_ties_count_half_each_way(parts):
    unet, sch = parts.unet, parts.scheduler
    m = DiffusionDPO(sch)
    torch.manual_seed(5)
    sure = m.compute_loss(_batch(), Denoiser(unet), AdapterOffDenoiser(unet)).per_pair
    torch.manual_seed(5)
    tie = m.compute_loss(_batch(torch.tensor([1.0, 0.5, 1.0])), Denoiser(unet), AdapterOffDenoiser(unet)).per_pair
    z = -torch.log(torch.expm1(sure[1].double()))  # β_d·logits of pair 1
    assert torch.equal(tie[[0, 2]], sure[[0, 2]])
    torch.testing.assert_close(tie[1].double(), 0.5 * (F.softplus(-z) + F.softplus(z)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["simpo", "nll", "kto", "robust", {"sigmoid": 1.0, "nll": 0.5}])
def test_any_kind_of_the_core_runs(parts, kind):
    m = DiffusionDPO(parts.scheduler, kinds=kind, params=LossParams(beta=BETA, label_smoothing=0.2))
    ref = AdapterOffDenoiser(parts.unet) if m.needs_reference else None
    out = m.compute_loss(_batch(torch.tensor([1.0, 0.5, 1.0])), Denoiser(parts.unet), ref)
    assert torch.isfinite(out.loss) and out.loss.requires_grad


def test_frozen_denoiser_casts_inputs(parts):
    import copy

    ref = copy.deepcopy(parts.unet).to(torch.bfloat16)
    cond = Conditioning(torch.randn(2, 16, 16))
    y = FrozenDenoiser(ref, torch.bfloat16)(torch.randn(2, 4, 8, 8), torch.tensor([5, 6]), cond)
    assert y.dtype == torch.bfloat16 and not y.requires_grad
