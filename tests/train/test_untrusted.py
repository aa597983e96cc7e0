"""Untrusted files: a malicious pickle placed where weights are read is never executed.

Each test puts a pickle whose unpickling would create a marker file (``Evil.__reduce__``) where a
loader reads weights, removes the safetensors beside it, and checks that the load is refused in
one line naming the folder and that the marker was never created. Remote code is never run
without ``trust_remote_code``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from diffalign.models.loading import PickleRefused
from tests.helpers import MESSAGES


class Evil:
    """Unpickling this calls ``open(marker, "w")``: the side effect the tests look for."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(folder: Path, name: str, marker: Path) -> Path:
    """Replace every safetensors file in ``folder`` with a malicious pickle ``name``."""
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save({"weight": Evil(marker)}, folder / name)
    return folder / name


@pytest.fixture
def pipe_copy(sd_path, tmp_path):
    dst = tmp_path / "pipe"
    shutil.copytree(sd_path, dst)
    return dst


@pytest.mark.parametrize("sub,name", [("unet", "diffusion_pytorch_model.bin"), ("vae", "diffusion_pytorch_model.bin"),
                                      ("text_encoder", "pytorch_model.bin")])
def test_training_components_refuse_pickles(pipe_copy, tmp_path, sub, name):
    from diffalign.models.families import load_components

    marker = tmp_path / "pwned"
    plant(pipe_copy / sub, name, marker)
    with pytest.raises(PickleRefused, match=rf"{sub}.* holds weights only as pickles \({name}\).*trust_pickle") as e:
        load_components(str(pipe_copy))
    assert not marker.exists()
    MESSAGES[f"untrusted: pickle in the pipeline's {sub}/"] = f"error: PickleRefused: {e.value}"


AUDIO_LOADERS = [("audioldm_path", "vocoder", "pytorch_model.bin"), ("audioldm2_path", "unet", "diffusion_pytorch_model.bin"),
                 ("audioldm2_path", "text_encoder_2", "pytorch_model.bin"),
                 ("audioldm2_path", "projection_model", "diffusion_pytorch_model.bin"),
                 ("audioldm2_path", "language_model", "pytorch_model.bin"), ("audioldm2_path", "vocoder", "pytorch_model.bin")]


@pytest.mark.parametrize("fixture,sub,name", AUDIO_LOADERS, ids=[f"{f[:-5]}-{s}" for f, s, _ in AUDIO_LOADERS])
def test_audio_family_components_refuse_pickles(request, tmp_path, fixture, sub, name):
    from diffalign.models.families import load_components

    dst = tmp_path / "pipe"
    shutil.copytree(request.getfixturevalue(fixture), dst)
    marker = tmp_path / "pwned"
    plant(dst / sub, name, marker)
    with pytest.raises(PickleRefused, match=rf"{sub}.* holds weights only as pickles \({name}\).*trust_pickle"):
        load_components(str(dst))
    assert not marker.exists()


def test_evaluation_pipeline_refuses_pickles(pipe_copy, tmp_path):
    from diffalign.eval.generate import load_pipeline

    marker = tmp_path / "pwned"
    plant(pipe_copy / "unet", "diffusion_pytorch_model.bin", marker)
    with pytest.raises(PickleRefused, match=r"pipeline: .*pipe holds weights only as pickles \(unet/diffusion_pytorch_model\.bin\)"):
        load_pipeline(str(pipe_copy))
    assert not marker.exists()


def test_evaluation_lora_refuses_pickles(sd_path, lora_out, tmp_path):
    from diffalign.eval.generate import load_pipeline

    lora = tmp_path / "lora"
    shutil.copytree(lora_out, lora)
    marker = tmp_path / "pwned"
    plant(lora, "pytorch_lora_weights.bin", marker)
    with pytest.raises(Exception):  # noqa: B017 - diffusers' own error; the point is what did not happen
        load_pipeline(sd_path, lora=str(lora))
    assert not marker.exists()


def saved_lm(text_cfg, tmp_path):
    """A tiny causal LM saved to ``tmp_path/lm`` and a config factory that loads it from there."""
    from diffalign.train.text import TextDPOTrainer

    tr = TextDPOTrainer(text_cfg(train={"max_steps": 1}))
    folder = tmp_path / "lm"
    tr.acc.unwrap_model(tr.model).save_pretrained(folder)
    return folder, lambda: text_cfg(model={"build": None, "path": str(folder), "tokenizer": str(tr.cfg.model.tokenizer)})


def test_text_model_refuses_pickles(text_cfg, tmp_path):
    from diffalign.train.text import TextDPOTrainer

    folder, make = saved_lm(text_cfg, tmp_path)
    marker = tmp_path / "pwned"
    plant(folder, "pytorch_model.bin", marker)
    cfg = make()
    with pytest.raises(PickleRefused, match=r"model\.path: .*lm holds weights only as pickles \(pytorch_model\.bin\)"):
        TextDPOTrainer(cfg)
    assert not marker.exists()


def test_text_model_runs_no_remote_code(text_cfg, tmp_path):
    from diffalign.train.text import TextDPOTrainer

    folder, make = saved_lm(text_cfg, tmp_path)
    marker = tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nfrom transformers import LlamaForCausalLM as EvilLM\n")
    conf = json.loads((folder / "config.json").read_text())
    conf["auto_map"] = {"AutoModelForCausalLM": "evil.EvilLM"}
    (folder / "config.json").write_text(json.dumps(conf))
    cfg = make()
    try:
        TextDPOTrainer(cfg)
    except Exception:  # noqa: BLE001 - refusing is fine too; running evil.py is not
        pass
    assert not marker.exists()


def test_pickscore_refuses_pickles(tmp_path):
    from diffalign.rewards.image.pickscore import build, tiny_clip_model

    folder = tmp_path / "pickscore"
    tiny_clip_model().save_pretrained(folder)
    marker = tmp_path / "pwned"
    plant(folder, "pytorch_model.bin", marker)
    with pytest.raises(PickleRefused, match=r"pickscore: .* holds weights only as pickles"):
        build(weights=str(folder), tokenizer=str(folder))
    assert not marker.exists()


def test_reward_checkpoints_are_read_weights_only(tmp_path):
    """``rewards.weights.load_state_dict`` reads the aesthetic head, HPSv2 and ImageReward checkpoints."""
    from diffalign.rewards.image.image_reward import _load, build

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": Evil(marker)}}, tmp_path / "ImageReward.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        _load(build().model, tmp_path / "ImageReward.pt")
    assert not marker.exists()


def test_open_clip_reward_checkpoints_are_read_weights_only(tmp_path):
    """clip_score (and the aesthetic reward's backbone) read open_clip checkpoints with weights_only."""
    from diffalign.rewards.image.clip_score import build

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": Evil(marker)}}, tmp_path / "clip.bin")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        build(weights=str(tmp_path / "clip.bin"), model="ViT-B-32")
    assert not marker.exists()


def test_a_pickle_in_a_checkpoint_is_not_read(dcfg, tmp_path):
    from diffalign.train import run
    from diffalign.train.checkpoint import find_checkpoint

    cfg = dcfg(train={"max_steps": 2, "save_every": 1, "keep_checkpoints": 2})
    run(cfg)
    out = Path(cfg.train.output_dir)
    marker = tmp_path / "pwned"
    newest = out / "checkpoint-00000001"
    torch.save({"w": Evil(marker)}, newest / "trainable.safetensors")  # a pickle under the safetensors name
    warnings = []
    assert find_checkpoint(out, "latest", warn=warnings.append) is None  # the only checkpoint fails verification
    assert len(warnings) == 1 and "checkpoint-00000001: trainable.safetensors" in warnings[0]
    assert not marker.exists()
    MESSAGES["untrusted: a pickle renamed .safetensors in a checkpoint"] = warnings[0]


def test_a_pickle_renamed_safetensors_in_a_model_folder(pipe_copy, tmp_path):
    from diffalign.models.families import load_components

    marker = tmp_path / "pwned"
    f = pipe_copy / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save({"w": Evil(marker)}, f)
    with pytest.raises(Exception, match=r"diffusion_pytorch_model\.safetensors") as e:
        load_components(str(pipe_copy))
    assert not marker.exists()
    MESSAGES["untrusted: a pickle renamed .safetensors in the model"] = f"error: {type(e.value).__name__}: {e.value}"
