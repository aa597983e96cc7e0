"""The offline diffusion trainer: LoRA and full fine-tuning, references, outputs, resume, SDXL, cache."""

import json
import math
from pathlib import Path

import pytest
import torch

from diffalign.data.pairs import BadRow
from diffalign.methods import METHODS
from diffalign.methods.diffusion_dpo import DiffusionDPO
from diffalign.models.denoiser import AdapterOffDenoiser, Denoiser
from diffalign.models.reference import AdapterOff, FrozenCopy, NoReference
from diffalign.train.offline import DiffusionTrainer
from tests.helpers import RES, pair_rows, probe, trainable, write_parquet


def test_lora_step_changes_adapters_keeps_reference_and_loads_in_diffusers(dcfg, sd_path, tmp_path):
    from diffusers import StableDiffusionPipeline

    tr = DiffusionTrainer(dcfg(train={"gradient_checkpointing": True}))
    assert tr.strategy == "adapter_off" and isinstance(tr.reference, AdapterOff)  # no second U-Net
    assert float(tr.batcher.empty["encoder_hidden_states"].abs().sum()) > 0  # SD: the encoding of ""
    assert tr.unet.is_gradient_checkpointing
    frozen = {n: p.detach().clone() for n, p in tr.unet.named_parameters() if not p.requires_grad}
    before = trainable(tr.unet)
    inp = probe()
    ref_before = AdapterOffDenoiser(tr.unet)(*inp)
    last = tr.train()
    after = trainable(tr.unet)
    assert set(before) == set(after) and all("lora" in n for n in after)
    assert all(not torch.equal(before[n], after[n]) for n in after if "lora_B" in n)  # every up-projection moved
    assert all(torch.equal(p, frozen[n]) for n, p in tr.unet.named_parameters() if not p.requires_grad)
    torch.testing.assert_close(AdapterOffDenoiser(tr.unet)(*inp), ref_before, rtol=0, atol=0)
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
        mine = Denoiser(tr.unet)(*inp)
        theirs = Denoiser(pipe.unet)(*inp)
    torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-5)
    assert (theirs - ref_before).abs().max() > 1e-4


def test_full_finetune_uses_a_frozen_copy_and_saves_a_pipeline(dcfg, tmp_path):
    from diffusers import StableDiffusionPipeline

    tr = DiffusionTrainer(dcfg(model={"lora": None}, train={"max_steps": 2, "grad_accum": 2, "log_with": ["tensorboard"]}))
    assert tr.strategy == "frozen_copy" and isinstance(tr.reference, FrozenCopy)
    ref0 = {n: p.detach().clone() for n, p in tr.reference.unet.named_parameters()}
    before = trainable(tr.unet)
    assert set(before) == set(ref0)
    tr.train()
    assert all(torch.equal(p, ref0[n]) for n, p in tr.reference.unet.named_parameters())
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
    inp = probe()
    torch.testing.assert_close(on.reference.denoiser()(*inp), off.reference.denoiser()(*inp))
    on.train(until=1)
    torch.testing.assert_close(on.reference.denoiser()(*inp), off.reference.denoiser()(*inp))  # the reference stays put


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
    wa, wc = trainable(a.unet), trainable(c.unet)
    assert all(torch.equal(wa[n], wc[n]) for n in wa)


def test_tiny_sdxl_trains_with_micro_conditioning_and_loads_in_diffusers(dcfg, sdxl_path, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    tr = DiffusionTrainer(dcfg(model={"path": sdxl_path}, train={"max_steps": 2}))
    assert tr.comp.family.name == "sdxl" and len(tr.comp.text_encoders) == 2
    # caption dropout feeds what the pipeline guides with: zeros (force_zeros_for_empty_prompt)
    assert all(float(v.abs().sum()) == 0 for v in tr.batcher.empty.values())
    b = tr.batcher.make_batch([0, 1], 0)
    c = b.cond  # 2B rows, chosen first
    assert c.encoder_hidden_states.shape == (4, 16, 32) and c.text_embeds.shape == (4, 16) and c.time_ids.shape == (4, 6)
    # real sizes: row 0 has image 0 of 20×24 (chosen), row 1 has label 0 so image 1 (24×20) is chosen
    assert c.time_ids[0].tolist() == [20.0, 24.0, 0.0, 2.0, RES, RES]  # resized to 16×19, centre crop
    assert c.time_ids[1].tolist() == [24.0, 20.0, 2.0, 0.0, RES, RES]
    plain = DiffusionTrainer(dcfg(model={"path": sdxl_path}, data={"cache": False}))
    u = plain.batcher.make_batch([0, 1], 0)
    torch.testing.assert_close(u.chosen, b.chosen, rtol=1e-4, atol=1e-5)
    for f in ("encoder_hidden_states", "text_embeds", "time_ids"):
        torch.testing.assert_close(getattr(u.cond, f), getattr(c, f), rtol=1e-4, atol=1e-5)
    inp = probe(xl=True)
    ref0 = AdapterOffDenoiser(tr.unet)(*inp)
    last = tr.train()
    assert torch.isfinite(torch.tensor(last["loss"]))
    torch.testing.assert_close(AdapterOffDenoiser(tr.unet)(*inp), ref0, rtol=0, atol=0)
    out = tr.save(tmp_path / "xl_lora")
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_path)
    pipe.load_lora_weights(str(out))
    with torch.no_grad():
        torch.testing.assert_close(Denoiser(pipe.unet)(*inp), Denoiser(tr.unet)(*inp), rtol=1e-5, atol=1e-5)


def test_bad_rows_stop_the_run_or_are_counted(dcfg, tmp_path):
    rows = pair_rows(6)
    rows[4]["label_0"] = 3
    path = write_parquet(rows, tmp_path / "bad.parquet")
    with pytest.raises(BadRow, match=r"bad\.parquet: row 4: column 'label_0'"):
        DiffusionTrainer(dcfg(data={"source": path}))
    tr = DiffusionTrainer(dcfg(data={"source": path, "on_bad_row": "skip"}, loss={"kinds": "simpo"}))
    assert len(tr.pairs) == 5 and tr.pairs.skipped == 1
    assert tr.strategy == "none" and isinstance(tr.reference, NoReference)  # a reference-free kind


def test_config_errors(dcfg):
    from diffalign.config import ConfigError

    with pytest.raises(ConfigError, match="paper-form Diffusion-DPO β"):
        dcfg(loss={"beta": 0.1})
    with pytest.raises(ConfigError, match="random needs data.cache: false"):
        dcfg(data={"crop": "random"})
    with pytest.raises(ConfigError, match="adapter_off needs model.lora"):
        dcfg(model={"lora": None}, reference={"strategy": "adapter_off"})
    with pytest.raises(ConfigError, match=r"<test>: method.name: unknown method 'diffusion_dpp' \(known: .*diffusion_dpo"):
        dcfg(method="diffusion_dpp")
    with pytest.raises(ConfigError, match=r"<test>: method.t_mi: unknown key \(did you mean 't_min'\?\)"):
        dcfg(method={"name": "diffusion_dpo", "t_mi": 3})
    with pytest.raises(ConfigError, match=r"method: method.t_min/t_max must satisfy"):
        dcfg(method={"name": "diffusion_dpo", "t_min": 500, "t_max": 400})
    assert dcfg().model.lora.target_modules == ["to_k", "to_q", "to_v", "to_out.0"]
    assert dcfg().method.t_max == 1000 and dcfg(method="diffusion_dpo").method.t_min == 0  # the method's defaults


class OnlineOnly(DiffusionDPO):
    """A method that needs on-policy samples: the offline trainer must refuse it."""

    needs_rollouts = True


def test_the_trainer_refuses_a_method_whose_needs_it_cannot_serve(dcfg, monkeypatch):
    from diffalign.config import ConfigError

    monkeypatch.setitem(METHODS, "online_only", f"{__name__}:OnlineOnly")
    with pytest.raises(ConfigError, match=r"method 'online_only' needs samples generated by the policy .*"
                                          r"trainer 'diffusion' trains on dataset pairs and cannot serve it"):
        dcfg(method="online_only")


def test_t_max_beyond_the_schedule_is_an_error_not_a_clamp(dcfg):
    with pytest.raises(ValueError, match="method.t_max 5000 exceeds the scheduler's 1000 training timesteps"):
        DiffusionTrainer(dcfg(method={"name": "diffusion_dpo", "t_max": 5000}))


@pytest.mark.gpu
def test_fp16_mixed_precision_on_cuda(dcfg):
    tr = DiffusionTrainer(dcfg(model={"lora": None}, train={"mixed_precision": "fp16", "max_steps": 2}))
    assert tr.reference.unet.dtype == torch.float16
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


def test_overlapped_reference_trains_the_same_weights(dcfg, tmp_path):
    """reference.overlap runs the same computation with other thread counts per operation: the same
    step-1 loss (log 2), the same later losses and weights up to float summation order; the caller's
    threads are all back after every step."""
    threads = torch.get_num_threads()
    runs, w0 = {}, None
    for overlap in (False, True):
        tr = DiffusionTrainer(dcfg(reference={"overlap": overlap}, train={"output_dir": str(tmp_path / str(overlap)),
                                                                          "num_threads": 2}))
        assert (tr.method.reference_overlap is not None) == overlap
        w0 = trainable(tr.unet)
        seen = []
        tr.train(on_step=lambda step, m: seen.append(torch.get_num_threads()))
        losses = [json.loads(x)["loss"] for x in (tmp_path / str(overlap) / "metrics.jsonl").read_text().splitlines()]
        runs[overlap] = (losses, trainable(tr.unet))
        assert seen == [2] * len(losses)
    torch.set_num_threads(threads)
    (l0, w_plain), (l1, w_over) = runs[False], runs[True]
    assert l0[0] == l1[0] and abs(l0[0] - math.log(2)) < 1e-4 and l0[-1] < l0[0]
    torch.testing.assert_close(torch.tensor(l1), torch.tensor(l0), rtol=2e-3, atol=0)
    for n in w0:  # the runs differ by far less than the training moved the weights
        moved = (w_plain[n] - w0[n]).norm()
        assert moved > 0 and (w_over[n] - w_plain[n]).norm() < 0.02 * moved, n


def test_reference_base_view_false_toggles_the_adapters_as_the_script_does(dcfg):
    view = DiffusionTrainer(dcfg()).reference.denoiser()
    toggled = DiffusionTrainer(dcfg(reference={"base_view": False})).reference.denoiser()
    assert view.separate() and not toggled.separate()


def test_xformers_without_the_package_fails_clearly(dcfg):
    try:
        import xformers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("xformers is installed")
    with pytest.raises(ImportError, match="model.xformers needs the xformers package"):
        DiffusionTrainer(dcfg(model={"xformers": True}))
