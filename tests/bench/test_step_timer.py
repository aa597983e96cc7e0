"""``bench/step_timer.py``: the training-steps-only memory peak."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

LOADING_SCRIPT = """
import torch
big = torch.ones(64_000_000)  # 244 MiB of 'model loading', freed before training
del big
w = torch.nn.Parameter(torch.zeros(3))
opt = torch.optim.SGD([w], lr=0.1)
for _ in range(3):
    w.sum().backward()
    opt.step()
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only: resets VmHWM")
def test_step_peak_excludes_what_happened_before_the_first_step(tmp_path):
    script, out = tmp_path / "load.py", tmp_path / "t.json"
    script.write_text(LOADING_SCRIPT)
    subprocess.run([sys.executable, "-m", "diffalign.bench.step_timer", "--out", str(out), "--", str(script)], check=True)
    rec = json.loads(out.read_text())
    assert rec["peak_rss_mib"] > 244 and rec["peak_rss_steps_mib"] is not None
    assert rec["peak_rss_mib"] - rec["peak_rss_steps_mib"] > 200, rec  # the freed loading peak is not a step's
