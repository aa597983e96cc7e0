"""The offline diffusion trainer: LoRA and full fine-tuning, references, outputs, resume, SDXL, cache."""

import json
from pathlib import Path

import pytest
import torch
from conftest import RES, pair_rows, write_parquet

from diffalign.data.pairs import BadRow
from diffalign.methods.base import AdapterOffDenoiser, Conditioning, Denoiser
from diffalign.train.offline import DiffusionTrainer


def _probe(unet, xl=False):
    """A fixed input of the tiny U-Nets."""
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700])
    if xl:
        return x, t, Conditioning(torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, generator=g),
                                  torch.tensor([[20.0, 24, 0, 2, 16, 16]] * 2))
    return x, t, Conditioning(torch.randn(2, 16, 16, generator=g))


def _trainable(unet):
    return {n: p.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}


def test_lora_step_changes_adapters_keeps_reference_and_loads_in_diffusers(dcfg, sd_path, tmp_path):
    from diffusers import StableDiffusionPipeline

    tr = DiffusionTrainer(dcfg(train={"gradient_checkpointing": True}))
    assert tr.strategy == "adapter_off" and tr.ref_unet is None  # no second U-Net
    assert float(tr.empty["encoder_hidden_states"].abs().sum()) > 0  # SD: the encoding of ""
    assert tr.unet.is_gradient_checkpointing
    frozen = {n: p.detach().clone() for n, p in tr.unet.named_parameters() if not p.requires_grad}
    before = _trainable(tr.unet)
    probe = _probe(tr.unet)
    ref_before = AdapterOffDenoiser(tr.unet)(*probe)
    last = tr.train()
    after = _trainable(tr.unet)
    assert set(before) == set(after) and all("lora" in n for n in after)
    assert all(not torch.equal(before[n], after[n]) for n in after if "lora_B" in n)  # every up-projection moved
    assert all(torch.equal(p, frozen[n]) for n, p in tr.unet.named_parameters() if not p.requires_grad)
    torch.testing.assert_close(AdapterOffDenoiser(tr.unet)(*probe), ref_before, rtol=0, atol=0)
    logged = [json.loads(x) for x in (Path(tr.cfg.train.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]
    for key in ("loss", "implicit_acc", "err/policy_chosen", "err/policy_rejected", "err/ref_chosen",
                "err/ref_rejected", "lr", "grad_norm", "rewards/margins"):
        assert key in last and key in logged[-1]
    assert abs(logged[0]["loss"] - 0.6931) < 1e-3  # gaussian LoRA init has B = 0: step-0 loss is log 2
    out = tr.save(tmp_path / "lora")
    pipe = StableDiffusionPipeline.from_pretrained(sd_path)
    pipe.load_lora_weights(str(out))
    with torch.no_grad():
        mine = Denoiser(tr.unet)(*probe)
        theirs = Denoiser(pipe.unet)(*probe)
    torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-5)
    assert (theirs - ref_before).abs().max() > 1e-4


def test_full_finetune_uses_a_frozen_copy_and_saves_a_pipeline(dcfg, tmp_path):
    from diffusers import StableDiffusionPipeline

    tr = DiffusionTrainer(dcfg(model={"lora": None}, train={"max_steps": 2, "grad_accum": 2, "log_with": ["tensorboard"]}))
    assert tr.strategy == "frozen_copy" and tr.ref_unet is not None
    ref0 = {n: p.detach().clone() for n, p in tr.ref_unet.named_parameters()}
    before = _trainable(tr.unet)
    assert set(before) == set(ref0)
    tr.train()
    assert all(torch.equal(p, ref0[n]) for n, p in tr.ref_unet.named_parameters())
    changed = [n for n, p in tr.unet.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), set(before) - set(changed)
    assert list(Path(tr.cfg.train.output_dir, "logs").rglob("events.out.tfevents*"))  # tensorboard tracker
    out = tr.save(tmp_path / "full")
    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert all(torch.equal(p, dict(tr.unet.named_parameters())[n]) for n, p in pipe.unet.named_parameters())
    img = pipe("a red circle", num_inference_steps=2, height=RES, width=RES, output_type="pt").images
    assert img.shape == (1, 3, RES, RES)


def test_offloaded_frozen_reference_matches_the_resident_one(dcfg):
    on = DiffusionTrainer(dcfg(model={"lora": None}, reference={"offload": True}))
    off = DiffusionTrainer(dcfg(model={"lora": None}))
    probe = _probe(off.unet)
    torch.testing.assert_close(on.reference()(*probe), off.reference()(*probe))
    on.train(until=1)
    torch.testing.assert_close(on.reference()(*probe), off.reference()(*probe))  # the reference stays put


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(dcfg, tmp_path):
    common = {"max_steps": 4, "save_every": 2, "keep_checkpoints": 1}
    data = {"caption_dropout": 0.5, "hflip": True}
    a = DiffusionTrainer(dcfg(data=data, train={**common, "output_dir": str(tmp_path / "a")}))
    a.train()
    b = DiffusionTrainer(dcfg(data=data, train={**common, "output_dir": str(tmp_path / "b")}))
    b.train(until=2)
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-00000002"]
    del b
    c = DiffusionTrainer(dcfg(data=data, train={**common, "output_dir": str(tmp_path / "b"), "resume": "latest"}))
    c.train()
    wa, wc = _trainable(a.unet), _trainable(c.unet)
    assert all(torch.equal(wa[n], wc[n]) for n in wa)


def test_cached_and_uncached_batches_agree(dcfg):
    data = {"caption_dropout": 0.5, "hflip": True, "ties": "half"}
    cached = DiffusionTrainer(dcfg(data=data))
    plain = DiffusionTrainer(dcfg(data={**data, "cache": False}))
    assert cached.cache is not None and plain.cache is None and cached.positions == plain.positions
    for epoch in (0, 1):
        x, y = cached.make_batch([0, 3, 5, 11], epoch), plain.make_batch([0, 3, 5, 11], epoch)
        for f in ("chosen", "rejected", "encoder_hidden_states", "label"):
            torch.testing.assert_close(getattr(x, f), getattr(y, f), rtol=1e-4, atol=1e-5)
    assert sorted(set(x.label.tolist())) == [0.5, 1.0]


def test_tiny_sdxl_trains_with_micro_conditioning_and_loads_in_diffusers(dcfg, sdxl_path, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    tr = DiffusionTrainer(dcfg(model={"path": sdxl_path}, train={"max_steps": 2}))
    assert tr.comp.family == "sdxl" and len(tr.comp.text_encoders) == 2
    # caption dropout feeds what the pipeline guides with: zeros (force_zeros_for_empty_prompt)
    assert all(float(v.abs().sum()) == 0 for v in tr.empty.values())
    b = tr.make_batch([0, 1], 0)
    assert b.encoder_hidden_states.shape[-1] == 32 and b.text_embeds.shape == (2, 16) and b.time_ids.shape == (4, 6)
    # real sizes: row 0 has image 0 of 20×24 (chosen), row 1 has label 0 so image 1 (24×20) is chosen
    assert b.time_ids[0].tolist() == [20.0, 24.0, 0.0, 2.0, RES, RES]  # resized to 16×19, centre crop
    assert b.time_ids[1].tolist() == [24.0, 20.0, 2.0, 0.0, RES, RES]
    plain = DiffusionTrainer(dcfg(model={"path": sdxl_path}, data={"cache": False}))
    u = plain.make_batch([0, 1], 0)
    for f in ("chosen", "encoder_hidden_states", "text_embeds", "time_ids"):
        torch.testing.assert_close(getattr(u, f), getattr(b, f), rtol=1e-4, atol=1e-5)
    probe = _probe(tr.unet, xl=True)
    ref0 = AdapterOffDenoiser(tr.unet)(*probe)
    last = tr.train()
    assert torch.isfinite(torch.tensor(last["loss"]))
    torch.testing.assert_close(AdapterOffDenoiser(tr.unet)(*probe), ref0, rtol=0, atol=0)
    out = tr.save(tmp_path / "xl_lora")
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_path)
    pipe.load_lora_weights(str(out))
    with torch.no_grad():
        torch.testing.assert_close(Denoiser(pipe.unet)(*probe), Denoiser(tr.unet)(*probe), rtol=1e-5, atol=1e-5)


def test_bad_rows_stop_the_run_or_are_counted(dcfg, tmp_path):
    rows = pair_rows(6)
    rows[4]["label_0"] = 3
    path = write_parquet(rows, tmp_path / "bad.parquet")
    with pytest.raises(BadRow, match=r"bad\.parquet: row 4: column 'label_0'"):
        DiffusionTrainer(dcfg(data={"source": path}))
    tr = DiffusionTrainer(dcfg(data={"source": path, "on_bad_row": "skip"}, loss={"kinds": "simpo"}))
    assert len(tr.pairs) == 5 and tr.pairs.skipped == 1
    assert tr.strategy == "none"  # a reference-free kind: the trainer asks for no reference


def test_config_errors(dcfg):
    from diffalign.config import ConfigError

    with pytest.raises(ConfigError, match="paper-form Diffusion-DPO β"):
        dcfg(loss={"beta": 0.1})
    with pytest.raises(ConfigError, match="random needs data.cache: false"):
        dcfg(data={"crop": "random"})
    with pytest.raises(ConfigError, match="adapter_off needs model.lora"):
        dcfg(model={"lora": None}, reference={"strategy": "adapter_off"})
    with pytest.raises(ConfigError, match="method must be one of"):
        dcfg(method="diffusion_dpp")
    assert dcfg().model.lora.target_modules == ["to_k", "to_q", "to_v", "to_out.0"]


@pytest.mark.gpu
def test_fp16_mixed_precision_on_cuda(dcfg):
    tr = DiffusionTrainer(dcfg(model={"lora": None}, train={"mixed_precision": "fp16", "max_steps": 2}))
    assert tr.ref_unet.dtype == torch.float16
    assert torch.isfinite(torch.tensor(tr.train()["loss"]))


def test_8bit_adam_without_bitsandbytes_fails_clearly(dcfg):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("bitsandbytes is installed: the 8-bit optimiser is built")
    tr = DiffusionTrainer(dcfg(train={"use_8bit_adam": True}))
    with pytest.raises(ImportError, match="use_8bit_adam needs the bitsandbytes package"):
        tr.train()
