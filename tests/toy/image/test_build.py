"""The builder itself (quick mode) and the torch-free command module."""

import json
import subprocess
import sys

import pyarrow.parquet as pq

from diffalign.toy.image.prefs import PREF_COLUMNS


def test_commands_import_without_torch():
    code = "import sys, diffalign.toy.commands; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quick_build_writes_every_asset(quick_build):
    names = {p.name for p in quick_build.iterdir()}
    assert {"pipeline", "toy_clip", "toy_judge", "prefs_train.parquet", "prefs_held_out.parquet", "exemplars.parquet",
            "prompts.json", "build_info.json", "README.md"} <= names
    assert not quick_build.with_name("image.partial").exists()
    info = json.loads((quick_build / "build_info.json").read_text())
    assert set(info["stage_seconds"]) == {"tokenizer", "vae", "latents", "unet", "toy_clip", "judge", "prefs",
                                         "exemplars"}
    assert info["sampling"]["guidance_scale"] == 3.0
    prefs = pq.read_table(quick_build / "prefs_train.parquet")
    assert set(PREF_COLUMNS) <= set(prefs.column_names) and prefs.num_rows == 4  # 3 groups + 1 background group
    assert prefs.schema.metadata[b"diffalign.labelled_by"] == b"toy_fidelity"
    assert info["prefs_train"]["labelled_by"] == "toy_fidelity" and "toy_judge" in info
    assert not list(quick_build.rglob("*.bin")) and list(quick_build.rglob("*.safetensors"))


def test_quick_build_loads_with_plain_libraries(quick_build):
    from diffusers import StableDiffusionPipeline

    from diffalign.toy.image.clip import clip_scores, load_toy_clip

    pipe = StableDiffusionPipeline.from_pretrained(quick_build / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a red circle"], num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, 32, 32)
    model, tok = load_toy_clip(quick_build / "toy_clip")
    assert clip_scores(model, tok, images, ["a red circle"]).shape == (1,)


def test_only_reruns_stages_on_a_finished_build(quick_build, tmp_path):
    import shutil

    import pytest

    from diffalign.toy.commands import main

    out = tmp_path / "image"
    shutil.copytree(quick_build, out)
    before = (out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert main(["toy", "build", "image", "--out", str(out), "--only", "exemplars", "--threads", "1"]) == 0
    info = json.loads((out / "build_info.json").read_text())
    assert info["updates"][-1]["stages"] == ["exemplars"] and "unet" in info["stage_seconds"]
    assert (out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    assert not out.with_name("image.partial").exists()
    with pytest.raises(ValueError, match=r"--only: \['unet'\] cannot re-run on a finished build"):
        main(["toy", "build", "image", "--out", str(out), "--only", "unet"])
