"""Tones world: grammar, split, renderer, mel front-end, tokenizer, toy_pitch and the toy audio embedding."""

import numpy as np
import pytest
import torch

from diffalign.toy.audio.world import (
    BAND_WORDS,
    BANDS,
    CLIP_SAMPLES,
    LOUDNESS,
    TIMBRES,
    TonesWorld,
    log_mel,
    parse_prompt,
)


@pytest.fixture(scope="module")
def world():
    return TonesWorld()


@pytest.fixture(scope="module")
def rendered(world):
    """Band-balanced renders: every prompt of the world once (216 clips)."""
    prompts = world.prompts
    wave, specs = world.render_prompts(prompts, seed=11)
    return torch.from_numpy(wave), prompts, specs


def _other_band_prompt(prompt: str, shift: int) -> str:
    """The same prompt naming another band (shift 1 or 2 bands up, cyclically)."""
    bands = list(BANDS)
    band = parse_prompt(prompt).band
    new = bands[(bands.index(band) + shift) % 3]
    words = [BAND_WORDS[new][0] if w in BAND_WORDS[band] else w for w in prompt.split()]
    return " ".join(words)


def test_grammar_and_fixed_split(world):
    assert len(world.prompts) == len(set(world.prompts)) == 216
    train, held = world.train_prompts, world.held_out_prompts
    assert (len(train), len(held)) == (162, 54) and not set(train) & set(held)
    assert TonesWorld().held_out_prompts == held  # fixed, not drawn per run
    for split in (train, held):
        combos = {(parse_prompt(p).band, parse_prompt(p).timbre) for p in split}
        assert len(combos) == 9  # every band × timbre combination on both sides
    assert [sum(parse_prompt(p).band == b for p in held) for b in BANDS] == [18, 18, 18]
    p = parse_prompt("a loud shrill buzzing square wave")
    assert (p.band, p.timbre, p.loudness) == ("high", "square", "loud")
    assert parse_prompt("a deep pure tone").loudness is None
    with pytest.raises(ValueError, match="not a tones-world prompt"):
        parse_prompt("a red circle")


def test_renderer_follows_the_spec(rendered):
    wave, prompts, specs = rendered
    assert wave.shape == (len(prompts), CLIP_SAMPLES) and wave.dtype == torch.float32
    peaks = wave.abs().max(dim=1).values.numpy()
    amps = np.array([s.amplitude for s in specs])
    np.testing.assert_allclose(peaks, amps, rtol=1e-3)
    for s in specs:
        lo, hi = BANDS[s.band]
        assert lo <= s.f0 <= hi and s.timbre in TIMBRES and LOUDNESS[s.loudness][0] <= s.amplitude <= LOUDNESS[s.loudness][1]
        stated = parse_prompt(s.prompt).loudness
        assert stated is None or stated == s.loudness
    mel = log_mel(wave[:4])
    assert mel.shape == (4, 64, 32) and torch.isfinite(mel).all()


def test_tokenizer_one_token_per_word(tmp_path, world):
    from transformers import RobertaTokenizer

    from diffalign.toy.audio.pretrain import build_tokenizer
    from diffalign.toy.audio.world import toy_words

    tok = build_tokenizer(tmp_path / "tok", model_max_length=16)
    assert len(tok) > 5 and tok.model_max_length == 16
    for word in toy_words():
        assert len(tok(" " + word, add_special_tokens=False).input_ids) == 1, word
    assert max(len(tok(p).input_ids) for p in world.prompts) <= 8
    tok.save_pretrained(tmp_path / "saved")
    again = RobertaTokenizer.from_pretrained(tmp_path / "saved")
    assert again("a loud deep sine tone").input_ids == tok("a loud deep sine tone").input_ids


def test_toy_pitch_scores_ground_truth_and_rejects_mismatches(rendered):
    from diffalign.toy.audio.scorer import score_pitch

    wave, prompts, specs = rendered
    own = score_pitch(wave, prompts)
    assert own["correct"].float().mean() >= 0.95
    f0 = np.array([s.f0 for s in specs])
    assert np.median(np.abs(own["f0"].numpy() / f0 - 1)) < 0.01
    for shift in (1, 2):
        wrong = score_pitch(wave, [_other_band_prompt(p, shift) for p in prompts])
        assert wrong["correct"].float().mean() <= 0.20
        assert wrong["graded"].mean() <= 0.20 < own["graded"].mean() - 0.5
    noisy = score_pitch(wave + 0.02 * torch.randn_like(wave), prompts)
    assert noisy["correct"].float().mean() >= 0.95 and noisy["graded"].mean() < own["graded"].mean()
    # graded: continuous (pairs rarely tie), silence and band-less prompts score 0
    g = own["graded"].numpy()
    assert (np.abs(g[0::2] - g[1::2]) < 1e-3).mean() < 0.05
    silent = score_pitch(torch.zeros(2, CLIP_SAMPLES), prompts[:2])
    assert silent["graded"].abs().max() == 0 and not silent["correct"].any()
    assert score_pitch(wave[:1], ["a dog barking"])["graded"].item() == 0


def _other_timbre_prompt(prompt: str, shift: int) -> str:
    """The same prompt naming another timbre (shift 1 or 2, cyclically), in that timbre's first phrase."""
    from diffalign.toy.audio.world import TIMBRE_WORDS

    timbre = parse_prompt(prompt).timbre
    new = TIMBRES[(TIMBRES.index(timbre) + shift) % 3]
    phrase = next(w for w in sorted(TIMBRE_WORDS[timbre], key=len, reverse=True) if prompt.endswith(w))
    return prompt[: -len(phrase)] + TIMBRE_WORDS[new][0]


def test_toy_pitch_scores_the_timbre_the_prompt_names(rendered):
    """The labeller sees the whole prompt: the timbre too (a reward blind to it lets a method trade it away)."""
    from diffalign.toy.audio.scorer import score_pitch

    wave, prompts, specs = rendered
    own = score_pitch(wave, prompts)
    assert own["timbre_correct"].float().mean() >= 0.95 and own["joint"].float().mean() >= 0.95
    for shift in (1, 2):
        wrong = score_pitch(wave, [_other_timbre_prompt(p, shift) for p in prompts])
        assert parse_prompt(_other_timbre_prompt(prompts[0], shift)).timbre != specs[0].timbre
        assert wrong["timbre_correct"].float().mean() <= 0.05 and wrong["correct"].float().mean() >= 0.95
        assert wrong["graded"].mean() < own["graded"].mean() - 0.4
    # per timbre: a sine is read as a sine, a square as a square, a sawtooth as a sawtooth
    for t in TIMBRES:
        sel = [i for i, s in enumerate(specs) if s.timbre == t]
        assert (own["timbre"][sel] == TIMBRES.index(t)).float().mean() >= 0.95, t


def test_band_from_mel_reads_ground_truth(rendered):
    from diffalign.toy.audio.scorer import BAND_NAMES, band_from_mel

    wave, prompts, specs = rendered
    target = torch.tensor([BAND_NAMES.index(s.band) for s in specs])
    assert (band_from_mel(log_mel(wave)) == target).float().mean() >= 0.95


def test_toy_audio_rewards_through_the_registry(rendered, world):
    """toy_pitch, toy_audio_embed, toy_audio_fad and toy_audio_vendi, loaded by name."""
    from diffalign.rewards import Samples, load

    wave, prompts, _ = rendered
    wave, prompts = wave[::2], prompts[::2]  # 108 clips, still band-balanced
    batch = Samples(wave[:, None], prompts=prompts, sample_rate=16000)
    pitch = load("toy_pitch")(batch)
    assert pitch.details["correct"].mean() >= 0.95 and pitch.scores.shape == (len(prompts),)
    # 48 kHz input is resampled to 16 kHz by the protocol
    from diffalign.rewards.base import resample

    hi = load("toy_pitch")(Samples(resample(wave[:30, None], 16000, 48000), prompts=prompts[:30], sample_rate=48000))
    assert hi.details["correct"].mean() >= 0.95

    fad, vendi, embed = load("toy_audio_fad"), load("toy_audio_vendi"), load("toy_audio_embed")
    assert embed.embed(batch).shape == (len(prompts), 64)
    assert embed.embed_frames(batch).shape == (len(prompts), 7, 64)
    fad_truth = fad(batch).scores.item()
    low_only = [i for i, p in enumerate(prompts) if parse_prompt(p).band == "low"]
    fad_low = fad(batch.select(torch.tensor(low_only))).scores.item()
    noise = Samples(0.3 * torch.randn(len(prompts), 1, CLIP_SAMPLES), sample_rate=16000)
    assert fad_truth < fad_low < fad(noise).scores.item()
    one_prompt, _ = world.render_prompts([prompts[0]] * 48, seed=3)
    v_one = vendi(Samples(torch.from_numpy(one_prompt)[:, None], sample_rate=16000)).scores.item()
    v_all = vendi(batch.select(torch.arange(48))).scores.item()
    assert 1 <= v_one < v_all
    typical = embed(batch).scores.mean()
    assert typical > embed(noise).scores.mean()
