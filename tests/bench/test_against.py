"""``bench diffusion --against diffusers-script``: inputs, the step timer, the side-by-side runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffalign.bench.step_timer import steady_rate
from diffalign.bench.world import arch_config, build_pairs

FAKE_SCRIPT = '''
import argparse, torch
p = argparse.ArgumentParser()
p.add_argument("--max_train_steps", type=int)
p.add_argument("--train_batch_size", type=int)
a, _ = p.parse_known_args()
w = torch.nn.Parameter(torch.zeros(3))
opt = torch.optim.SGD([w], lr=0.1)
for _ in range(a.max_train_steps):
    w.sum().backward()
    opt.step()
'''


def test_steady_rate_is_pairs_over_the_window_after_skip():
    ends = [5.0, 6.0, 6.5, 7.0, 8.0]  # steps 3..5 take 7.0 − ... : window t5 − t2 = 2.0 s for 3 steps
    assert steady_rate(ends, 4, skip=2) == pytest.approx(4 * 3 / 2.0)
    assert steady_rate(ends[:2], 4, skip=2) is None


def test_step_timer_sees_every_optimiser_step_of_a_program(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(FAKE_SCRIPT)
    out = tmp_path / "t.json"
    subprocess.run([sys.executable, "-m", "diffalign.bench.step_timer", "--out", str(out), "--", str(script),
                    "--max_train_steps", "4"], check=True)
    rec = json.loads(out.read_text())
    assert rec["exit"] == 0 and len(rec["step_end_s"]) == 4 and rec["peak_rss_mib"] > 0
    assert rec["step_end_s"] == sorted(rec["step_end_s"])


def test_shipped_architectures_are_the_peer_u_net_and_sd15():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def count(cls, cfg):
        with torch.device("meta"):
            return sum(p.numel() for p in cls(**cfg).parameters())

    small, sd15 = arch_config("sd-small"), arch_config("sd15")
    assert count(UNet2DConditionModel, small["unet"]) == 24_249_476  # make_tiny_sd.py --size small: 24.25 M
    assert count(UNet2DConditionModel, sd15["unet"]) == 859_520_964  # stable-diffusion-v1-5 unet
    assert count(AutoencoderKL, sd15["vae"]) == 83_653_863
    with torch.device("meta"):
        te = CLIPTextModel(CLIPTextConfig(**sd15["text_encoder"]))
    assert sum(p.numel() for p in te.parameters()) == 123_060_480  # CLIP ViT-L/14 text tower
    with pytest.raises(ValueError, match="unknown benchmark architecture"):
        arch_config("sd99")


def test_pairs_are_pick_a_pic_columns_and_rebuilt_only_when_asked_differently(tmp_path):
    import pyarrow.parquet as pq

    path = build_pairs(tmp_path, n=6, resolution=32)
    t = pq.read_table(path)
    assert t.column_names == ["caption", "jpg_0", "jpg_1", "label_0", "label_1"] and t.num_rows == 6
    assert all(a + b == 1.0 for a, b in zip(t["label_0"].to_pylist(), t["label_1"].to_pylist()))
    stamp = path.stat().st_mtime_ns
    assert build_pairs(tmp_path, n=6, resolution=32) == path and path.stat().st_mtime_ns == stamp
    build_pairs(tmp_path, n=4, resolution=32)
    assert pq.read_table(path).num_rows == 4


def test_against_without_a_path_says_how_to_get_the_script(capsys):
    from diffalign.cli import main

    assert main(["bench", "diffusion", "--against", "diffusers-script"]) == 2
    assert "train_diffusion_dpo.py" in capsys.readouterr().out


def test_against_runs_both_programs_on_the_same_inputs(tmp_path, capsys):
    """The runner end to end, with a stand-in for the script (the real one is not in CI)."""
    from diffalign.cli import main

    script = tmp_path / "train_diffusion_dpo.py"
    script.write_text(FAKE_SCRIPT)
    out = tmp_path / "bench.json"
    rc = main(["bench", "diffusion", "--against", "diffusers-script", str(script), "--resolution", "32", "--batch", "1",
               "--steps", "4", "--repeats", "1", "--pairs", "4", "--cache", "on", "--workdir", str(tmp_path / "w"),
               "--out", str(out), "--ablate", "reference.overlap=true"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rows = json.loads(out.read_text())["rows"]
    assert [r["who"] for r in rows] == ["script", "ours_cache_on", "+reference.overlap=true"]
    assert all(r["steps"] == 4 for r in rows)
    for ours in rows[1:]:
        assert ours["pairs_per_s"] > 0 and abs(ours["loss_first"] - 0.6931) < 1e-3  # LoRA B = 0: log 2 at step 1
    assert "× script" in text and "GFLOP per pair" in text
    cfg = json.loads((tmp_path / "w" / "runs" / "ours_cache_on_b1_rep1" / "cfg.yaml").read_text())
    assert cfg["model"]["lora"] == {"r": 4, "alpha": 4, "init": "gaussian"} and cfg["loss"]["beta"] == 5000.0
    ablated = json.loads((tmp_path / "w" / "runs" / "ablate2_b1_rep1" / "cfg.yaml").read_text())
    assert ablated["reference"] == {"strategy": "adapter_off", "overlap": True} and ablated["data"]["cache"] is True


def test_paired_ratios_divide_by_the_script_of_the_same_repeat():
    from diffalign.bench.against import paired_ratios

    rows = [{"batch": 2, "rep": 1, "who": "script", "pairs_per_s": 4.0}, {"batch": 2, "rep": 1, "who": "ours", "pairs_per_s": 6.0},
            {"batch": 2, "rep": 2, "who": "script", "pairs_per_s": 2.0}, {"batch": 2, "rep": 2, "who": "ours", "pairs_per_s": 3.5},
            {"batch": 4, "rep": 1, "who": "ours", "pairs_per_s": 9.0}, {"batch": 2, "rep": 3, "who": "ours", "pairs_per_s": 1.0}]
    assert paired_ratios(rows, 2, "ours") == [1.5, 1.75]  # rep 3 has no script run: left out
    assert paired_ratios(rows, 4, "ours") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path of the GPU check")
def test_gpu_check_script_skips_with_one_line_without_cuda():
    """scripts/gpu_check.sh on a machine without CUDA: one line, exit 0, nothing measured."""
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "skipped" in lines[0]
