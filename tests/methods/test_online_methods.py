"""The online methods on a tiny real U-Net: DRAGON and SePPO — log 2 at policy = reference, a step
moves the policy and not the reference, shared noise per pair, and what each builds from a round."""

import math

import pytest
import torch

from diffalign.data.batches import PairBatch
from diffalign.losses import LossParams
from diffalign.methods import method_class
from diffalign.methods.dragon import Dragon
from diffalign.methods.seppo import SePPO
from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser
from diffalign.sampling.rollouts import Groups
from tests.helpers import recording

B = 3
METHODS = [Dragon, SePPO]


def _batch():
    g = torch.Generator().manual_seed(3)
    chosen, rejected = torch.randn(B, 4, 8, 8, generator=g), torch.randn(B, 4, 8, 8, generator=g)
    return PairBatch(chosen, rejected, Conditioning(torch.randn(B, 16, 16, generator=g).repeat(2, 1, 1)))


def _comp(sd_path, init):
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], init)
    return comp


@pytest.fixture(scope="module")
def equal(sd_path):
    return _comp(sd_path, "true")  # LoRA B = 0: policy = reference


def test_registry_and_needs():
    assert method_class("dragon") is Dragon and method_class("seppo") is SePPO
    assert Dragon.class_needs() == {"rollouts", "reward"} and Dragon.rollout_model == "policy"
    assert SePPO.class_needs() == {"rollouts", "winners"} and SePPO.rollout_model == "reference"


@pytest.mark.parametrize("cls", METHODS)
def test_loss_is_log2_when_policy_equals_reference(equal, cls):
    m = cls(equal.scheduler, params=LossParams(beta=5000.0))
    with torch.no_grad():
        out = m.compute_loss(_batch(), Denoiser(equal.unet), AdapterOffDenoiser(equal.unet))
    assert abs(float(out.loss) - math.log(2)) < 1e-6
    if cls is SePPO:  # an exact tie on the anchor: I = 0 for every pair
        assert float(out.metrics["anchor/sft"]) == 1.0


@pytest.mark.parametrize("cls", METHODS)
def test_a_step_changes_the_policy_and_leaves_the_reference_unchanged(sd_path, cls):
    comp = _comp(sd_path, "true")  # starts at policy = reference: SePPO's first step is its SFT-like term
    unet = comp.unet
    lora = {n: p.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    ref = AdapterOffDenoiser(unet)
    x = (torch.randn(2, 4, 8, 8), torch.tensor([100, 800]), Conditioning(torch.randn(2, 16, 16)))
    ref0 = ref(*x)
    opt = torch.optim.SGD([p for p in unet.parameters() if p.requires_grad], lr=1.0)
    for _ in range(2):
        opt.zero_grad()
        cls(comp.scheduler).compute_loss(_batch(), Denoiser(unet), ref).loss.backward()
        opt.step()
    assert all(not torch.equal(p, lora[n]) for n, p in unet.named_parameters() if "lora_B" in n)
    assert torch.equal(ref(*x), ref0)


@pytest.mark.parametrize("cls", METHODS)
def test_shared_noise_per_pair(equal, cls):
    seen = []

    same = _batch()
    same.rejected = same.chosen.clone()  # identical samples ⇒ identical noisy inputs iff (t, ε) shared
    cls(equal.scheduler).compute_loss(same, recording(equal.unet, seen), recording(equal.unet, seen))
    assert len(seen) == 2
    for x_t, t in seen:
        assert torch.equal(x_t[:B], x_t[B:]) and torch.equal(t[:B], t[B:])
    assert torch.equal(seen[0][0], seen[1][0])


def test_seppo_switch_rates_follow_the_anchor(sd_path):
    """Policy ≠ reference: the logged rates are those of the criterion on the anchors' scores."""
    comp = _comp(sd_path, "gaussian")
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in comp.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    rates = {}
    for criterion in ("sign", "indicator", "always_loser"):
        torch.manual_seed(4)  # the same (t, ε) draws for each criterion
        out = SePPO(comp.scheduler, criterion=criterion).compute_loss(_batch(), Denoiser(comp.unet),
                                                                      AdapterOffDenoiser(comp.unet))
        rates[criterion] = [float(out.metrics[f"anchor/{k}"]) for k in ("loser", "sft", "flip")]
        assert math.isclose(sum(rates[criterion]), 1.0, rel_tol=1e-6)
    sign, ind = rates["sign"], rates["indicator"]
    assert 0 < sign[0] < 1 and sign[1] == 0.0  # both signs occur; no exact tie once policy ≠ reference
    assert ind[0] == sign[0] and ind[1] == sign[2] and ind[2] == 0.0  # the indicator turns flips into SFT
    assert rates["always_loser"] == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="reference-free"):
        SePPO(comp.scheduler, kinds="simpo")


def test_what_each_builds_from_a_round():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.3, 0.3])  # 2 prompts × 3 samples; the second has no spread
    g = Groups(["a", "b"], 3, torch.randn(6, 4, 8, 8), torch.rand(6, 3, 32, 32), list(range(6)), scores)
    d = Dragon(_scheduler(), min_spread=1e-6).build(g)
    assert d.pairs.tolist() == [[1, 0]] and d.stats["groups_without_spread"] == 1
    with pytest.raises(ValueError, match="no winners"):
        SePPO(_scheduler()).build(g)
    g.anchors = torch.randn(2, 4, 8, 8)
    s = SePPO(_scheduler()).build(g)
    assert s.pairs.tolist() == [[6, 0], [6, 1], [6, 2], [7, 3], [7, 4], [7, 5]]  # winner row G·K + g first
    assert g.prompt_of(7) == "b" and g.prompt_of(2) == "a"
    assert torch.equal(g.latent(torch.tensor([7, 1])), torch.stack([g.anchors[1], g.latents[1]]))


def _scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000)
