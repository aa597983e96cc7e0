"""Audio evaluation: base vs tuned AudioLDM with instance and set rewards, spectrogram grid, WAVs;
set comparisons; the tones world's independent judge."""

import json

import numpy as np
import pytest
import torch

from diffalign.eval import evaluate
from diffalign.eval.audio import set_compare, spectrogram_tiles, to_samples
from diffalign.rewards.base import Reward, RewardResult, RewardSpec
from diffalign.rewards.set_reward import SetReward


class Loudness(Reward):
    """RMS of each clip: a stateless instance reward."""

    spec = RewardSpec(name="loudness", modality="audio", needs_prompt=False, sample_rate=16000)

    def score(self, samples):
        return RewardResult(samples.data.pow(2).mean(dim=(1, 2)).sqrt())


class Spread(SetReward):
    """Set reward: mean distance of clip spectra to their centroid (higher = more diverse)."""

    spec = RewardSpec(name="spread", modality="audio", scope="set", needs_prompt=False, sample_rate=16000)

    def embed(self, samples):
        return torch.fft.rfft(samples.data.mean(dim=1)).abs()[:, :64].double()

    def score_embeddings(self, emb):
        return (emb - emb.mean(0)).norm(dim=1).mean()


@pytest.fixture(scope="module")
def tuned_audioldm(audioldm_path, tmp_path_factory):
    """The tiny AudioLDM with a perturbed U-Net, saved as a whole pipeline."""
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(audioldm_path)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("tuned_audioldm") / "pipe"
    pipe.save_pretrained(out)
    return str(out)


def test_audio_evaluation_writes_reports_grid_and_wavs(audioldm_path, tuned_audioldm, tmp_path):
    prompts = {"held_out": ["a low tone", "a high tone"], "train": ["a loud tone"]}
    res = evaluate(audioldm_path, tuned_audioldm, prompts, Loudness(), tmp_path / "ev", seeds_per_prompt=2,
                   guidance_scale=2.5, num_inference_steps=2, judges=[Spread()], labelled_by="loudness")
    held = res["held_out"]
    assert held["n"] == 4 and held["scorers"]["loudness"]["wins"] + held["scorers"]["loudness"]["ties"] + \
        held["scorers"]["loudness"]["losses"] == 4
    s = held["sets"]["spread"]
    assert s["n"] == 4 and s["gain"]["lo"] <= s["gain"]["mean"] <= s["gain"]["hi"]
    assert (tmp_path / "ev" / "grid.png").is_file() and (tmp_path / "ev" / "report.json").is_file()
    wavs = sorted((tmp_path / "ev" / "audio").glob("*.wav"))
    assert wavs, "a few samples are written as WAV files"
    import soundfile as sf

    wave, sr = sf.read(wavs[0])
    assert sr == 16000 and wave.ndim == 1 and len(wave) == 1024
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert "spread" in json.dumps(report) and "set" in (tmp_path / "ev" / "report.md").read_text()


def test_set_compare_embeds_once_and_matches_direct_scoring():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(12, 1024, generator=g) * 0.1
    tuned = torch.randn(12, 1024, generator=g) * 0.3
    r = Spread()
    out = set_compare(r, base, tuned, [""] * 12, 16000, n_boot=50)
    direct_b = float(r(to_samples(base, [""] * 12, 16000)).scores)
    direct_t = float(r(to_samples(tuned, [""] * 12, 16000)).scores)
    assert out["base"]["mean"] == pytest.approx(direct_b, rel=1e-6) and out["tuned"]["mean"] == pytest.approx(direct_t, rel=1e-6)
    assert out["gain"]["lo"] > 0  # three times the amplitude: clearly more spread, and the CI says so


def test_spectrogram_tiles_are_images():
    from tests.helpers import tone

    tiles = spectrogram_tiles(torch.from_numpy(np.stack([tone(200.0, n=8000), tone(1600.0, n=8000)])), 16000)
    assert tiles.ndim == 4 and tiles.shape[:2] == (2, 3) and 0 <= float(tiles.min()) and float(tiles.max()) <= 1
    rows = tiles[:, 0].mean(dim=-1)  # a low tone's energy sits lower (higher row index) than a high one's
    assert int(rows[0].argmax()) > int(rows[1].argmax())


def test_toy_audio_judge_reads_renders_and_rejects_mismatched_prompts():
    from diffalign.rewards import load
    from diffalign.toy.audio.world import BANDS, TIMBRES, TonesWorld, all_prompts

    world = TonesWorld()
    prompts = all_prompts()[::6]  # 36 prompts over every band and timbre
    wave, _ = world.render_prompts(prompts, 3)
    judge = load("toy_audio_judge")
    res = judge(to_samples(torch.from_numpy(wave), prompts, 16000))
    assert float(res.details["band_ok"].mean()) >= 0.99 and float(res.details["timbre_ok"].mean()) >= 0.99
    other = []  # the same clips under prompts naming another band and another timbre
    for p in prompts:
        from diffalign.toy.audio.world import parse_prompt

        t = parse_prompt(p)
        b = list(BANDS)[(list(BANDS).index(t.band) + 1) % len(BANDS)]
        tb = list(TIMBRES)[(list(TIMBRES).index(t.timbre) + 1) % len(TIMBRES)]
        other.append(next(q for q in all_prompts() if parse_prompt(q).band == b and parse_prompt(q).timbre == tb))
    wrong = judge(to_samples(torch.from_numpy(wave), other, 16000))
    assert float(wrong.scores.mean()) <= 0.05
    assert float(judge(to_samples(torch.from_numpy(wave[:2]), ["a dog barking", "x"], 16000)).scores.sum()) == 0
