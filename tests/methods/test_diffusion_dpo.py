"""Diffusion-DPO on a tiny real U-Net: the paper's loss, log 2 at policy = reference, shared noise,
any kind of the core, ties, v-prediction."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffalign.data.batches import PairBatch
from diffalign.losses import KINDS, LossParams
from diffalign.methods import METHODS, method_class
from diffalign.methods.diffusion_dpo import DiffusionDPO
from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser
from tests.helpers import recording

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
    chosen, rejected = torch.randn(B, 4, 8, 8, generator=g), torch.randn(B, 4, 8, 8, generator=g)
    return PairBatch(chosen, rejected, Conditioning(torch.randn(B, 16, 16, generator=g).repeat(2, 1, 1)), label=label)


def test_registry_and_declared_needs(parts):
    assert method_class("diffusion_dpo") is DiffusionDPO and "diffusion_dpo" in METHODS
    m = DiffusionDPO(parts.scheduler)
    assert m.needs() == {"reference"} and DiffusionDPO.class_needs() == frozenset()
    assert DiffusionDPO(parts.scheduler, kinds="simpo").needs() == frozenset()  # reference-free kind
    with pytest.raises(ValueError, match="unknown loss kind 'sigmod'.*did you mean 'sigmoid'"):
        DiffusionDPO(parts.scheduler, kinds="sigmod")
    with pytest.raises(ValueError, match="need a reference denoiser"):
        DiffusionDPO(parts.scheduler).compute_loss(_batch(), Denoiser(parts.unet), None)


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
    ehs = batch.cond.encoder_hidden_states  # [2B, L, D]: the prompt of each pair twice
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


def test_policy_and_reference_see_the_same_noisy_pair(parts):
    """Shared noise per pair: identical images give identical noisy inputs iff (t, ε) are shared."""
    sch = parts.scheduler
    seen = []

    same = _batch()
    same.rejected = same.chosen.clone()  # identical images ⇒ identical noisy inputs iff (t, ε) shared
    DiffusionDPO(sch).compute_loss(same, recording(parts.unet, seen), recording(parts.unet, seen))
    assert len(seen) == 2  # policy and reference
    for x_t, t in seen:
        assert torch.equal(x_t[:B], x_t[B:]) and torch.equal(t[:B], t[B:])
    torch.testing.assert_close(seen[0][0], seen[1][0], rtol=0, atol=0)  # and the same inputs for both


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


def test_a_step_changes_the_policy_and_leaves_the_reference_unchanged(sd_path):
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    unet = comp.unet
    lora = {n: p.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    base = {n: p.detach().clone() for n, p in unet.named_parameters() if not p.requires_grad}
    ref = AdapterOffDenoiser(unet)
    x = (torch.randn(2, 4, 8, 8), torch.tensor([100, 800]), Conditioning(torch.randn(2, 16, 16)))
    ref0 = ref(*x)
    opt = torch.optim.SGD([p for p in unet.parameters() if p.requires_grad], lr=1.0)
    DiffusionDPO(comp.scheduler).compute_loss(_batch(), Denoiser(unet), ref).loss.backward()
    opt.step()
    assert all(not torch.equal(p, lora[n]) for n, p in unet.named_parameters() if "lora_B" in n)
    assert all(torch.equal(p, base[n]) for n, p in unet.named_parameters() if not p.requires_grad)
    assert torch.equal(ref(*x), ref0)


def test_overlapped_reference_gives_the_same_loss_and_never_overlaps_a_toggled_reference(parts):
    """reference_overlap: the reference forward on its own thread gives the sequential loss; a
    reference that toggles the policy's own adapters (no base view) is run after the policy instead."""
    import threading

    from diffalign.models.reference import ReferenceOverlap

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plain = DiffusionDPO(parts.scheduler)
        torch.manual_seed(0)
        want = plain.compute_loss(_batch(), Denoiser(parts.unet), AdapterOffDenoiser(parts.unet))
        over = DiffusionDPO(parts.scheduler)
        over.reference_overlap = ReferenceOverlap(2)
        where = []

        class Spy(AdapterOffDenoiser):  # records the thread each reference call runs on
            def __call__(self, *a):
                where.append(threading.current_thread().name)
                return super().__call__(*a)

        for view in (True, False):
            where.clear()
            spy = Spy(parts.unet, view=view)
            torch.manual_seed(0)
            got = over.compute_loss(_batch(), Denoiser(parts.unet), spy)
            torch.testing.assert_close(got.loss, want.loss, rtol=1e-4, atol=1e-6)
            assert where[0].startswith("reference") == view
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_kl_regulariser_is_dpoks_prediction_gap_and_zero_at_the_reference(parts, equal_parts):
    """``kl_weight`` adds λ·mean‖ε_θ(x_t) − ε_ref(x_t)‖² (DPOK Eq. 7) on the batch's own noised samples."""
    batch = _batch()
    # policy = reference: the term is 0 and the loss stays log 2
    m = DiffusionDPO(equal_parts.scheduler, kl_weight=1e4)
    with torch.no_grad():
        out = m.compute_loss(batch, Denoiser(equal_parts.unet), AdapterOffDenoiser(equal_parts.unet))
    assert float(out.metrics["kl/reference"]) == 0.0 and abs(float(out.loss) - math.log(2)) < 1e-6
    # policy ≠ reference: exactly the plain loss + λ·(the prediction gap, recomputed by hand)
    unet, sch, lam = parts.unet, parts.scheduler, 123.0
    plain, reg = DiffusionDPO(sch), DiffusionDPO(sch, kl_weight=lam)
    torch.manual_seed(7)
    base = plain.compute_loss(batch, Denoiser(unet), AdapterOffDenoiser(unet)).loss
    torch.manual_seed(7)
    out = reg.compute_loss(batch, Denoiser(unet), AdapterOffDenoiser(unet))
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (B,)).repeat(2)
    noise = torch.randn(B, 4, 8, 8).repeat(2, 1, 1, 1)
    x_t = sch.add_noise(torch.cat([batch.chosen, batch.rejected]), noise, t)
    ehs = batch.cond.encoder_hidden_states
    with torch.no_grad():
        pred = unet(x_t, t, ehs).sample
        unet.disable_adapters()
        ref = unet(x_t, t, ehs).sample
        unet.enable_adapters()
    gap = (pred - ref).pow(2).mean(dim=[1, 2, 3]).mean()
    assert gap > 1e-6
    torch.testing.assert_close(out.metrics["kl/reference"], gap, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(out.loss.detach(), base.detach() + lam * gap, rtol=1e-5, atol=1e-6)
    # a reference-free kind still needs the reference when the regulariser reads it; λ < 0 is refused
    assert DiffusionDPO(sch, kinds="simpo", kl_weight=1.0).needs_reference
    with pytest.raises(ValueError, match="kl_weight"):
        DiffusionDPO(sch, kl_weight=-1.0)
