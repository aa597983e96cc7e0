"""NCP as the ``space:`` of a denoising method: identity = latent Diffusion-DPO, log 2, shared noise,
reference-free kinds and SFT, InPO in feature space, the trainer moves the encoder."""

import math

import pytest
import torch

from diffalign.data.batches import PairBatch
from diffalign.losses import LossParams
from diffalign.losses.perceptual import PerceptualDistance
from diffalign.methods.base import SpaceConfig
from diffalign.methods.diffusion_dpo import DiffusionDPO, make_distance
from diffalign.methods.inpo import InPO
from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser

B = 3


@pytest.fixture(scope="module")
def comp(sd_path):
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    c = load_components(sd_path)
    add_lora(c.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "true")  # B = 0: policy = reference
    return c


def _batch(seed=3):
    g = torch.Generator().manual_seed(seed)
    chosen, rejected = torch.randn(B, 4, 8, 8, generator=g), torch.randn(B, 4, 8, 8, generator=g)
    return PairBatch(chosen, rejected, Conditioning(torch.randn(B, 16, 16, generator=g).repeat(2, 1, 1)))


def _perturb(unet, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)


def test_identity_feature_map_equals_latent_diffusion_dpo_exactly(comp):
    import copy

    unet = copy.deepcopy(comp.unet)
    _perturb(unet)
    pol, ref = Denoiser(unet), AdapterOffDenoiser(unet)
    latent = DiffusionDPO(comp.scheduler)
    ncp = DiffusionDPO(comp.scheduler, distance=PerceptualDistance(lambda z, s, c: [z], comp.scheduler, "epsilon", "direct"))
    torch.manual_seed(9)
    a = latent.compute_loss(_batch(), pol, ref)
    torch.manual_seed(9)
    b = ncp.compute_loss(_batch(), pol, ref)
    assert float(a.loss - math.log(2)) != 0  # policy ≠ reference: a non-trivial comparison
    assert torch.equal(a.loss, b.loss) and torch.equal(a.per_pair, b.per_pair)
    assert all(torch.equal(a.metrics[k], b.metrics[k]) for k in a.metrics)


@pytest.mark.parametrize("level,target", [("mid", "t-1"), ("down", "uniform"), ("multi", "x0")])
def test_ncp_dpo_is_log2_at_policy_equals_reference(comp, level, target):
    m = DiffusionDPO(comp.scheduler, distance=make_distance(SpaceConfig("unet", level, target), comp))
    out = m.compute_loss(_batch(), Denoiser(comp.unet), AdapterOffDenoiser(comp.unet))
    assert abs(float(out.loss) - math.log(2)) < 1e-6
    assert set(m.modules()) == {"feature_encoder"} and m.modules()["feature_encoder"].unet is not comp.unet


def test_identical_images_get_identical_feature_distances(comp):
    """Shared t, ε and posterior noise per pair: the same image twice gives d(w) = d(l)."""
    import copy

    unet = copy.deepcopy(comp.unet)
    _perturb(unet)
    m = DiffusionDPO(comp.scheduler, distance=make_distance(SpaceConfig("unet", "mid", "t-1"), comp))
    same = _batch()
    same.rejected = same.chosen.clone()
    out = m.compute_loss(same, Denoiser(unet), AdapterOffDenoiser(unet))
    assert float(out.metrics["err/policy_chosen"]) == pytest.approx(float(out.metrics["err/policy_rejected"]), rel=1e-6)
    assert abs(float(out.loss) - math.log(2)) < 1e-6  # no margin between identical images


@pytest.mark.parametrize("kind", ["cpo", "simpo", "nll", {"sigmoid": 1.0, "nll": 0.5}])
def test_reference_free_kinds_and_sft_in_feature_space(comp, kind):
    m = DiffusionDPO(comp.scheduler, kinds=kind, params=LossParams(beta=5000.0, cpo_alpha=0.0),
                     distance=make_distance(SpaceConfig("unet", "mid", "t-1"), comp))
    ref = AdapterOffDenoiser(comp.unet) if m.needs_reference else None
    out = m.compute_loss(_batch(), Denoiser(comp.unet), ref)
    assert torch.isfinite(out.loss) and out.loss.requires_grad


def test_a_step_moves_the_policy_not_the_reference_nor_the_encoder(sd_path):
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    c = load_components(sd_path)
    m = DiffusionDPO(c.scheduler, distance=make_distance(SpaceConfig("unet", "mid", "t-1"), c))
    add_lora(c.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    enc0 = {n: p.detach().clone() for n, p in m.modules()["feature_encoder"].named_parameters()}
    lora = {n: p.detach().clone() for n, p in c.unet.named_parameters() if p.requires_grad}
    ref = AdapterOffDenoiser(c.unet)
    x = (torch.randn(2, 4, 8, 8), torch.tensor([100, 800]), Conditioning(torch.randn(2, 16, 16)))
    ref0 = ref(*x)
    opt = torch.optim.SGD([p for p in c.unet.parameters() if p.requires_grad], lr=1.0)
    m.compute_loss(_batch(), Denoiser(c.unet), ref).loss.backward()
    opt.step()
    assert all(not torch.equal(p, lora[n]) for n, p in c.unet.named_parameters() if "lora_B" in n)
    assert torch.equal(ref(*x), ref0)
    assert all(torch.equal(p, enc0[n]) for n, p in m.modules()["feature_encoder"].named_parameters())


def test_inpo_in_feature_space_and_the_trainer_owns_the_encoder(dcfg):
    from diffalign.train.offline import DiffusionTrainer

    space = {"kind": "unet", "level": "mid", "target": "t-1"}
    tr = DiffusionTrainer(dcfg(method={"name": "inpo", "inversion_steps": 4, "space": space}, train={"max_steps": 2}))
    assert isinstance(tr.method, InPO) and isinstance(tr.method.distance, PerceptualDistance)
    enc = tr.method.modules()["feature_encoder"]
    assert next(enc.parameters()).device == tr.acc.device
    last = tr.train()
    assert math.isfinite(last["loss"])
