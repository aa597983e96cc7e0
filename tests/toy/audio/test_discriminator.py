"""The toy vocoder's optional multi-period discriminator (HiFi-GAN §2.2)."""

import torch

from diffalign.toy.audio.discriminator import MultiPeriodDiscriminator, discriminator_loss, generator_adv_loss


def test_each_period_folds_the_wave_and_the_losses_have_their_closed_forms():
    torch.manual_seed(0)
    d = MultiPeriodDiscriminator()
    wave = torch.randn(3, 1000)  # 1000 is not a multiple of 3, 7 or 11: reflect-padded
    outs = d(wave)
    assert len(outs) == 5
    for sub, (score, feats) in zip(d.subs, outs):
        assert score.shape[0] == 3 and feats[0].shape[-1] == sub.period  # [B, C, T / p, p]
    # L_D = Σ_p E[(D(y) − 1)²] + E[D(ŷ)²]: zero when real scores are 1 and fake ones 0
    ones = [(torch.ones(2, 4), []), (torch.ones(2, 4), [])]
    zeros = [(torch.zeros(2, 4), []), (torch.zeros(2, 4), [])]
    assert discriminator_loss(ones, zeros) == 0 and discriminator_loss(zeros, ones) == 4
    # L_adv = Σ_p E[(D(ŷ) − 1)²]; feature matching ‖f(y) − f(ŷ)‖₁ weighted 2
    real = [(torch.ones(2, 4), [torch.zeros(2, 3)])]
    fake = [(torch.zeros(2, 4), [torch.full((2, 3), 0.5)])]
    assert torch.isclose(generator_adv_loss(real, fake), torch.tensor(1.0 + 2 * 0.5))


def test_generator_loss_moves_only_the_generator_output():
    torch.manual_seed(0)
    d = MultiPeriodDiscriminator()
    y = torch.randn(2, 512)
    pred = torch.randn(2, 512, requires_grad=True)
    generator_adv_loss(d(y), d(pred)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    d.zero_grad()
    y_leaf = y.clone().requires_grad_(True)
    discriminator_loss(d(y_leaf), d(pred.detach())).backward()
    assert all(p.grad is not None for p in d.parameters())


def test_vocoder_trains_with_the_discriminator_from_adv_start():
    import diffalign.toy.audio.pretrain as at
    from diffalign.toy.audio.world import TonesWorld

    world = TonesWorld()
    waves, mels = at.render_mels(world, world.train_prompts[:4], seed=0)
    cfg = at.VocoderConfig(initial_channels=16, resblock_kernels=(3,), steps=3, batch=2, segment_frames=8,
                           adv_weight=0.1, adv_start=1)
    voc = at.make_vocoder(cfg, mels.mean(dim=(0, 1)), mels.std(dim=(0, 1)), seed=0)
    before = {k: v.clone() for k, v in voc.state_dict().items()}
    stats = at.train_vocoder(voc, None, waves, mels, cfg, seed=0, log=lambda s: None)
    assert stats["steps"] == 3 and torch.isfinite(torch.tensor(stats["loss"]))
    assert any(not torch.equal(before[k], v) for k, v in voc.state_dict().items())
