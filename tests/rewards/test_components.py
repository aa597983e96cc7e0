"""Front-ends and compositions: CLAP mel vs ClapFeatureExtractor, windowing, image preprocessing,
tokenizers, FAD/Vendi over built-in embedders, WeightedSum of built-ins."""

import pytest
import torch

from diffalign.rewards import Samples, WeightedSum, load
from diffalign.rewards.audio.clap import ClapMel, repeatpad, windows
from diffalign.rewards.conformance import check_reward
from diffalign.rewards.image._common import resize_center_crop, resize_longest_pad
from diffalign.rewards.set_reward import LeaveOneOut


def test_clap_mel_matches_the_transformers_feature_extractor():
    from transformers import ClapFeatureExtractor

    extractor = ClapFeatureExtractor(feature_size=64, frequency_min=50, frequency_max=14000, truncation="rand_trunc")
    wave = torch.rand(48000) * 2 - 1  # 1 s, shorter than 10 s: the extractor's deterministic repeatpad path
    ref = extractor(wave.numpy(), sampling_rate=48000, return_tensors="pt")["input_features"][0, 0]
    ours = ClapMel()(repeatpad(wave[None], 480000))[0]
    assert ours.shape == ref.shape == (1001, 64)
    assert (ours - ref).abs().max() < 1e-3  # dB; float32 vs float64


def test_windows_are_deterministic_and_cover_the_clip():
    x = torch.arange(10.0)[None]
    assert torch.equal(repeatpad(torch.tensor([[1.0, 2.0, 3.0]]), 7), torch.tensor([[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0]]))
    w = windows(x, length=4, hop=3)
    assert w.shape == (1, 3, 4)  # starts 0, 3 and the tail window 6..9
    assert w[0, -1].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert windows(x, length=12, hop=12).shape == (1, 1, 12)


def test_image_preprocessing_shapes_and_padding():
    x = torch.rand(1, 3, 30, 60)
    assert resize_center_crop(x, 16).shape == (1, 3, 16, 16)
    padded = resize_longest_pad(x, 16)
    assert padded.shape == (1, 3, 16, 16)
    assert padded[..., :4, :].abs().sum() == 0 and padded[..., -4:, :].abs().sum() == 0  # 8 rows of image, zero bands
    same = torch.rand(1, 3, 16, 16)
    assert resize_longest_pad(same, 16) is same
    assert resize_longest_pad(torch.rand(1, 3, 16, 8), 16).shape == (1, 3, 16, 16)


def test_tiny_tokenizers_are_not_empty():
    from diffalign.rewards._tokenizers import tiny_bert_tokenizer, tiny_clip_tokenizer, tiny_roberta_tokenizer

    for tok in (tiny_clip_tokenizer(), tiny_roberta_tokenizer(), tiny_bert_tokenizer()):
        assert len(tok) > 100
        ids = tok(["hello world"])["input_ids"][0]
        assert len(ids) > 5 and tok.unk_token_id not in ids[1:-1]


def test_fad_per_sample_fad_inf_and_loo_over_clap(built_rewards, no_network):
    clap = built_rewards("clap")
    x = torch.rand(5, 1, 24000) * 1.6 - 0.8  # 0.5 s at 48 kHz
    with no_network():
        fad = load("fad", embedder=clap)
        ref = clap.embed(Samples(torch.rand(12, 1, 24000) * 1.6 - 0.8, sample_rate=48000)).detach()
        fad.fit_reference(ref)
        value = fad(Samples(x, sample_rate=48000)).scores
        loo = LeaveOneOut(fad)(Samples(x, sample_rate=48000))
        assert loo.scores.shape == (5,) and torch.allclose(loo.details["set"], value.expand(5))
        fad_inf = load("fad", embedder=clap, reference=ref, fad_inf=True, inf_sizes=[3, 4, 5])
        assert torch.isfinite(fad_inf(Samples(x, sample_rate=48000)).scores)
        per = load("fad", per_sample=True, window_s=0.2, hop_s=0.1)  # 0.5 s clips → 4 frames each
        check_reward(per, Samples(x, sample_rate=48000))
        assert per.spec.scope == "instance_to_set" and not per.spec.higher_is_better


def test_vendi_over_clip_embeddings_is_between_1_and_n(no_network):
    with no_network():
        vendi = load("vendi", embedder="clip_score", q=2)
    assert vendi.spec.modality == "image" and vendi.spec.scope == "set"
    x = torch.rand(4, 3, 32, 32)
    value = vendi(Samples(x)).scores.item()
    assert 1.0 <= value <= 4.0 + 1e-5
    assert vendi(Samples(x[:1].expand(4, -1, -1, -1).clone())).scores.item() == pytest.approx(1.0, abs=1e-4)


def test_weighted_sum_of_builtins_conforms_and_logs_components(built_rewards, no_network):
    ws = WeightedSum({"clip_score": 1.0, "aesthetic": 0.5},
                     rewards={"clip_score": built_rewards("clip_score"), "aesthetic": built_rewards("aesthetic")})
    with no_network():
        check_reward(ws)
        s = Samples(torch.rand(3, 3, 32, 32), ["a", "b", "c"])
        out = ws(s)
    expect = out.details["clip_score"] + 0.5 * out.details["aesthetic"]
    assert torch.allclose(out.scores, expect, atol=1e-6)


def test_docs_write_your_own_reward_example_runs_and_conforms():
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = doc.split("### Write your own reward in 20 lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    check_reward(namespace["build"](gain=2.0))
