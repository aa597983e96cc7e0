"""Scale-out through accelerate: two CPU processes (gloo) end with the weights and logged metrics of
one process at the same global batch (``data.per_pair_noise``); the latent cache is built once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file


def _config(sd_path, pairs_parquet, tmp_path, name, batch):
    cfg = {"trainer": "diffusion", "method": {"name": "diffusion_dpo"},
           "model": {"path": sd_path, "lora": {"r": 4, "alpha": 4, "init": "gaussian"}},
           "data": {"source": pairs_parquet, "resolution": 16, "hflip": True, "per_pair_noise": True, "cache": True,
                    "cache_dir": str(tmp_path / f"cache-{name}")},
           "loss": {"kinds": "sigmoid", "beta": 5000.0},
           "train": {"output_dir": str(tmp_path / name), "batch_size": batch, "max_steps": 3, "lr": 1e-3,
                     "log_every": 1, "num_threads": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text("# diffalign train\n" + yaml.safe_dump(cfg))
    return path


# two CPU processes through accelerate (gloo); on a machine without CUDA accelerate takes --multi_gpu as "several processes"
LAUNCH_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "diffalign.cli", "train"]


def _run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    res = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_processes_equal_one_at_the_same_global_batch(sd_path, pairs_parquet, tmp_path):
    one = _config(sd_path, pairs_parquet, tmp_path, "one", 4)
    two = _config(sd_path, pairs_parquet, tmp_path, "two", 2)
    _run([sys.executable, "-m", "diffalign.cli", "train", str(one)], tmp_path)
    res = _run([*LAUNCH_2, str(two)], tmp_path)
    assert res.stdout.count("[data]") == 1 and res.stdout.count("caching latents") <= 1  # main process only
    a = load_file(tmp_path / "one" / "final" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "two" / "final" / "pytorch_lora_weights.safetensors")
    assert set(a) == set(b)
    moved = max(float(a[k].abs().max()) for k in a if ".up." in k)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"\n[scale-out] 1 process × batch 4 vs 2 processes × batch 2, 3 steps: max |Δw| {diff:.2e} "
          f"(largest up-projection weight {moved:.2e})")
    assert moved > 1e-4 and diff < 1e-5  # equal up to float summation order
    logs = [[json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("one", "two")]
    for r1, r2 in zip(*logs):  # step 1 sees identical weights; later steps inherit Adam-amplified rounding
        tol = 1e-5 if r1["step"] == 1 else 1e-3
        for k in ("loss", "grad_norm", "err/policy_chosen", "err/policy_rejected"):
            assert r1[k] == pytest.approx(r2[k], rel=tol, abs=1e-7), (r1["step"], k)


def test_text_dpo_on_two_processes_equals_one(tmp_path):
    root = Path(__file__).parents[2]
    base = yaml.safe_load((root / "configs/reliability/text.yaml").read_text())
    base["data"] = {k: str(root / v) if k in ("train",) else v for k, v in base["data"].items() if k != "eval"}
    base["model"]["tokenizer"] = str(root / base["model"]["tokenizer"])
    base["train"].update(max_steps=3, save_every=None, warmup_steps=0)
    base["train"].pop("keep_checkpoints", None)
    paths = {}
    for name, bs in (("one", 8), ("two", 4)):
        c = yaml.safe_load(yaml.safe_dump(base))
        c["train"].update(batch_size=bs, output_dir=str(tmp_path / name))
        c["reference"]["cache_dir"] = str(tmp_path / f"ref-{name}")
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text("# diffalign train\n" + yaml.safe_dump(c))
    _run([sys.executable, "-m", "diffalign.cli", "train", str(paths["one"])], tmp_path)
    _run([*LAUNCH_2, str(paths["two"])], tmp_path)
    a, b = (load_file(tmp_path / n / "final" / "model.safetensors") for n in ("one", "two"))
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"\n[scale-out] text DPO, 1 process × batch 8 vs 2 processes × batch 4, 3 steps: max |Δw| {diff:.2e}")
    assert diff < 1e-5
    logs = [[json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("one", "two")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3]
    for r1, r2 in zip(*logs):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-4) and r1["grad_norm"] == pytest.approx(r2["grad_norm"], rel=1e-4)

