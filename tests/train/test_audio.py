"""Audio training on a tiny AudioLDM: the family (mel ↔ latents ↔ waveform, CLAP ``class_labels``),
audio pairs, Diffusion-DPO with LoRA on convolutions and full fine-tuning, outputs that reload in
plain diffusers, bad audio rows."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffalign.data.pairs import BadRow
from diffalign.models.denoiser import AdapterOffDenoiser, Conditioning, Denoiser
from diffalign.models.families import detect_family, load_components
from diffalign.train.offline import DiffusionTrainer
from tests.helpers import AUDIO_SR, audio_pair_rows, tone, trainable, wav_bytes, write_parquet

CONVS = ["conv1", "conv2"]


@pytest.fixture(scope="module")
def aldm(audioldm_path):
    return load_components(audioldm_path)


@pytest.fixture
def acfg(audioldm_path, audio_pairs_parquet, cache_dir, tmp_path):
    from diffalign.train import parse_config

    def make(**sections):
        data = {
            "trainer": "diffusion",
            "model": {"path": audioldm_path, "lora": {"r": 4, "alpha": 4, "init": "gaussian", "target_modules": CONVS}},
            "data": {"source": audio_pairs_parquet, "cache_dir": cache_dir},
            "loss": {"kinds": "sigmoid", "beta": 5000.0},
            "train": {"output_dir": str(tmp_path / "out"), "batch_size": 2, "max_steps": 3, "lr": 1e-3, "log_every": 1},
        }
        for sec, val in sections.items():
            data[sec] = {**(data.get(sec) or {}), **val} if isinstance(val, dict) else val
        return parse_config(data, "<test>")

    return make


def probe_audio(comp, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, h, w = comp.family.latent_shape(comp)
    x = torch.randn(n, c, h, w, generator=g)
    t = torch.tensor([100, 700][:n])
    cond = comp.family.conditioning(comp.family.encode_prompts(comp, ["a low tone", "a high tone"][:n]), None)
    return x, t, cond


def test_family_round_trip_and_conditioning(aldm, audioldm_path):
    fam = aldm.family
    assert detect_family(audioldm_path) == "audioldm" and fam.modality == "audio"
    assert fam.sample_rate(aldm) == AUDIO_SR and fam.clip_samples(aldm) == 1024
    assert fam.latent_shape(aldm) == (4, 8, 8)
    waves = torch.from_numpy(np.stack([tone(200.0), tone(1200.0)]))
    lat = fam.encode_samples(aldm, waves)
    assert lat.shape == (2, 4, 8, 8) and lat.dtype == torch.float32
    back = fam.decode_samples(aldm, lat)
    assert back.shape == (2, 1024) and torch.isfinite(back).all()
    text = fam.encode_prompts(aldm, ["a low tone", "a high tone"])
    assert set(text) == {"class_labels"} and text["class_labels"].shape == (2, 8)
    torch.testing.assert_close(text["class_labels"].norm(dim=-1), torch.ones(2))  # L2-normalised, as the pipeline
    cond = fam.conditioning(text, None)
    assert cond.encoder_hidden_states is None and "class_labels" in cond.unet_kwargs()
    assert float(fam.empty_conditioning(aldm)["class_labels"].abs().sum()) > 0  # the encoding of ""
    x, t, cond = probe_audio(aldm)
    with torch.no_grad():
        a = Denoiser(aldm.unet)(x, t, cond)
        b = Denoiser(aldm.unet)(x, t, Conditioning(class_labels=-cond.class_labels))
    assert a.shape == x.shape and (a - b).abs().max() > 1e-5  # the text reaches the U-Net


def test_sampled_latents_decode_to_the_pipelines_own_waveforms(aldm, audioldm_path):
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(audioldm_path)
    pipe.set_progress_bar_config(disable=True)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    lat = aldm.family.sample_latents(pipe, ["a low tone", "a high tone"], gens(), 2.5, 3)
    assert lat.shape == (2, 4, 8, 8)
    noise = torch.stack([torch.randn(4, 8, 8, generator=g) for g in gens()])
    theirs = pipe(["a low tone", "a high tone"], latents=noise, guidance_scale=2.5, num_inference_steps=3).audios
    mine = aldm.family.decode_samples(aldm, lat)
    np.testing.assert_allclose(mine.numpy(), theirs, atol=1e-5)
    assert "decode_latents" not in vars(pipe)  # the interception is undone


def test_lora_on_a_unet_without_attention_names_what_can_be_targeted(acfg):
    with pytest.raises(ValueError, match=r"\['to_k', 'to_q', 'to_v', 'to_out.0'\] matched no layer of the U-Net; its "
                                         r"linear and convolution layers are named .*conv1, conv2"):
        DiffusionTrainer(acfg(model={"lora": {"r": 4, "alpha": 4}}))  # the default targets: attention projections


def test_lora_audio_dpo_step_keeps_reference_and_reloads_in_plain_diffusers(acfg, audioldm_path, tmp_path):
    from diffusers import AudioLDMPipeline

    tr = DiffusionTrainer(acfg())
    assert tr.batcher.hflip is False and len(tr.batcher.pairs) == 8
    frozen = {n: p.detach().clone() for n, p in tr.unet.named_parameters() if not p.requires_grad}
    before = trainable(tr.unet)
    inp = probe_audio(tr.comp)
    ref_before = AdapterOffDenoiser(tr.unet)(*inp)
    tr.train()
    logged = [json.loads(x) for x in (Path(tr.cfg.train.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert abs(logged[0]["loss"] - np.log(2)) < 1e-3  # policy = reference at step 0 (B = 0): loss log 2
    after = trainable(tr.unet)
    assert all("lora" in n for n in after) and any(not torch.equal(before[n], after[n]) for n in after)
    assert all(torch.equal(p, frozen[n]) for n, p in tr.unet.named_parameters() if not p.requires_grad)
    torch.testing.assert_close(AdapterOffDenoiser(tr.unet)(*inp), ref_before, rtol=0, atol=0)
    out = tr.save(tmp_path / "lora")
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    pipe = AudioLDMPipeline.from_pretrained(audioldm_path)
    pipe.unet.load_lora_adapter(str(out), prefix="unet", use_safetensors=True)  # what the README tells users
    with torch.no_grad():
        torch.testing.assert_close(Denoiser(pipe.unet)(*inp), Denoiser(tr.unet)(*inp), rtol=1e-5, atol=1e-5)
    assert (Denoiser(pipe.unet)(*inp) - ref_before).abs().max() > 1e-6


def test_full_finetune_saves_an_audioldm_pipeline_with_its_mel_front_end(acfg, tmp_path):
    from diffusers import AudioLDMPipeline

    tr = DiffusionTrainer(acfg(model={"lora": None}, train={"max_steps": 2}))
    ref0 = {n: p.detach().clone() for n, p in tr.reference.unet.named_parameters()}
    tr.train()
    assert all(torch.equal(p, ref0[n]) for n, p in tr.reference.unet.named_parameters())
    out = tr.save(tmp_path / "full")
    assert (out / "mel_config.json").is_file()
    pipe = AudioLDMPipeline.from_pretrained(out)
    inp = probe_audio(tr.comp)
    with torch.no_grad():
        torch.testing.assert_close(Denoiser(pipe.unet)(*inp), Denoiser(tr.unet)(*inp), rtol=1e-5, atol=1e-5)


def test_audio_pairs_are_cut_to_the_clip_and_never_flipped(acfg):
    with pytest.raises(ValueError, match="data.hflip: audio clips are not flipped"):
        DiffusionTrainer(acfg(data={"hflip": True}))
    tr = DiffusionTrainer(acfg(data={"cache": False, "audio_seconds": 0.032}))  # 512 samples → 8 mel frames
    b = tr.batcher.make_batch([0, 1], 0)
    assert b.chosen.shape == b.rejected.shape == (2, 4, 4, 8)  # 8 frames / VAE factor 2, 16 mels / 2
    assert b.cond.class_labels.shape == (4, 8) and b.cond.encoder_hidden_states is None


BAD_AUDIO = [
    ("undecodable", {"audio_0": b"not a wav file"}, "audio_0"),
    ("wrong_rate", {"audio_1": wav_bytes(tone(300.0, sr=22050), sr=22050)}, "audio_1"),
    ("silence", {"audio_0": wav_bytes(np.zeros(1024, np.float32))}, "audio_0"),
    ("no_caption", {"caption": None}, "caption"),
    ("label_out_of_range", {"label_0": 2.0}, "label_0"),
]


@pytest.mark.parametrize("case,change,column", BAD_AUDIO, ids=[c[0] for c in BAD_AUDIO])
def test_bad_audio_rows_name_dataset_row_and_column_or_are_skipped(acfg, tmp_path, case, change, column):
    rows = audio_pair_rows(4)
    rows[2].update(change)
    src = write_parquet(rows, tmp_path / f"{case}.parquet")
    with pytest.raises(BadRow, match=rf"{case}\.parquet.*row 2.*{column}"):
        DiffusionTrainer(acfg(data={"source": src, "cache": False}))
    tr = DiffusionTrainer(acfg(data={"source": src, "cache": False, "on_bad_row": "skip"}))
    assert len(tr.batcher.pairs) == 3 and tr.batcher.pairs.skipped == 1


def test_wrong_rate_is_resampled_when_asked(acfg, tmp_path):
    rows = audio_pair_rows(4)
    rows[1]["audio_0"] = wav_bytes(tone(300.0, n=2048, sr=32000), sr=32000)
    src = write_parquet(rows, tmp_path / "rate.parquet")
    tr = DiffusionTrainer(acfg(data={"source": src, "cache": False, "resample": True}))
    assert len(tr.batcher.pairs) == 4


# ---- AudioLDM 2 --------------------------------------------------------------------------------------
def test_audioldm2_conditioning_and_sampled_latents_match_the_pipeline(audioldm2_path):
    from diffusers import AudioLDM2Pipeline

    comp = load_components(audioldm2_path)
    fam = comp.family
    assert detect_family(audioldm2_path) == "audioldm2" and fam.modality == "audio"
    text = fam.encode_prompts(comp, ["a low tone", "a high tone with a much longer caption"])
    assert text["encoder_hidden_states"].shape == (2, 8, 16)  # GPT-2's 8 generated states
    assert text["encoder_hidden_states_1"].shape == (2, 12, 32) and text["encoder_attention_mask_1"].shape == (2, 12)
    assert fam.encode_prompts(comp, ["x"])["encoder_hidden_states_1"].shape == (1, 12, 32)  # fixed length, any batch
    pipe = AudioLDM2Pipeline.from_pretrained(audioldm2_path)
    pipe.set_progress_bar_config(disable=True)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    prompts = ["a low tone", "a high tone"]
    lat = fam.sample_latents(pipe, prompts, gens(), 2.5, 3)
    noise = torch.stack([torch.randn(fam.latent_shape(comp), generator=g) for g in gens()])
    theirs = pipe(prompts, latents=noise, guidance_scale=2.5, num_inference_steps=3).audios
    np.testing.assert_allclose(fam.decode_samples(comp, lat).numpy(), theirs, atol=1e-5)
    # our conditioning is the pipeline's: one U-Net call on it equals the pipeline's own inputs
    t5, mask, gen = pipe.encode_prompt(prompts, "cpu", 1, False)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([50, 900])
    with torch.no_grad():
        mine = Denoiser(comp.unet)(x, t, fam.conditioning(fam.encode_prompts(comp, prompts), None))
        ref = pipe.unet(x, t, encoder_hidden_states=gen, encoder_hidden_states_1=t5, encoder_attention_mask_1=mask).sample
    torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)


def test_tiny_audioldm2_trains_and_its_output_reloads_in_plain_diffusers(acfg, audioldm2_path, tmp_path):
    from diffusers import AudioLDM2Pipeline

    with pytest.raises(ValueError, match="AudioLDM2UNet2DConditionModel has no adapter support"):
        DiffusionTrainer(acfg(model={"path": audioldm2_path, "lora": {"r": 4, "alpha": 4}}))
    tr = DiffusionTrainer(acfg(model={"path": audioldm2_path, "lora": None}, data={"cache": False}))
    ref0 = {n: p.detach().clone() for n, p in tr.reference.unet.named_parameters()}
    before = trainable(tr.unet)
    tr.train()
    logged = [json.loads(x) for x in (Path(tr.cfg.train.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert abs(logged[0]["loss"] - np.log(2)) < 1e-3  # the frozen copy equals the policy at step 0
    assert all(torch.equal(p, ref0[n]) for n, p in tr.reference.unet.named_parameters())
    after = trainable(tr.unet)
    assert any(not torch.equal(before[n], after[n]) for n in after)
    out = tr.save(tmp_path / "full2")
    pipe = AudioLDM2Pipeline.from_pretrained(out)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([50, 900])
    cond = tr.comp.family.conditioning(tr.comp.family.encode_prompts(tr.comp, ["a low tone", "a high tone"]), None)
    with torch.no_grad():
        torch.testing.assert_close(Denoiser(pipe.unet)(x, t, cond), Denoiser(tr.unet)(x, t, cond), rtol=1e-5, atol=1e-5)
    assert (out / "mel_config.json").is_file()
