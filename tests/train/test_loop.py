"""The one training loop on a tiny module: accumulation, metric reduction, checkpoints and exact resume."""

import json
import math
from pathlib import Path

import torch

from diffalign.train.common import make_accelerator
from diffalign.train.config_common import LoopConfig
from diffalign.train.loop import Loop


class Counter:
    """A stateful object the loop checkpoints."""

    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, d):
        self.n = d["n"]


DATA = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
TARGET = DATA @ torch.tensor([1.0, -2.0, 0.5])


def _run(tmp_path, name, batch, accum, steps=4, until=None, resume=None, save_every=None, counter=None):
    cfg = LoopConfig(output_dir=str(tmp_path / name), batch_size=batch, grad_accum=accum, max_steps=steps, lr=0.1,
                     log_every=1, save_every=save_every, keep_checkpoints=5, resume=resume, lr_schedule="cosine")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    counter = counter or Counter()
    loop = Loop(make_accelerator(cfg), cfg, model, name=name, states={"counter": counter})

    def batches(start):
        m = start
        while True:
            yield m
            m += 1

    def compute(model, m):
        counter.n += 1
        i = torch.arange(m * batch, (m + 1) * batch) % 64
        loss = (model(DATA[i]).squeeze(-1) - TARGET[i]).pow(2).mean()
        return loss, {"loss": loss.detach(), "num_rows": torch.tensor(float(batch))}

    last = loop.run(steps, batches, compute, until=until)
    return loop, last, counter


def test_batch_4_equals_batch_2_times_accumulation_2(tmp_path):
    a, la, _ = _run(tmp_path, "a", 4, 1)
    b, lb, _ = _run(tmp_path, "b", 2, 2)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert lb["num_rows"] == 4.0 and la["num_rows"] == 4.0  # num_* metrics are summed over micro-steps
    torch.testing.assert_close(torch.tensor(lb["loss"]), torch.tensor(la["loss"]), rtol=1e-5, atol=1e-6)  # others averaged
    rows = [json.loads(x) for x in (Path(tmp_path / "b") / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("grad_norm" in r and "lr" in r for r in rows)


def test_resume_restores_weights_optimiser_schedule_and_states(tmp_path):
    full, _, c_full = _run(tmp_path, "full", 2, 2, steps=6)
    _run(tmp_path, "cut", 2, 2, steps=6, until=3, save_every=3)
    assert [p.name for p in (tmp_path / "cut").glob("checkpoint-*")] == ["checkpoint-00000003"]
    resumed, _, c_res = _run(tmp_path, "cut", 2, 2, steps=6, resume="latest")
    assert resumed.step == 6 and c_res.n == c_full.n == 12  # the counter came back from the checkpoint (6 + 6)
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(pa, pb)


def test_one_read_per_step_returns_every_loss_metric_and_the_grad_norm():
    from diffalign.train.loop import _read_once

    pending = [(torch.tensor(0.5), {"acc": torch.tensor(1.0), "num_pairs": 4, "margin": torch.tensor([2.5])}),
               (torch.tensor(float("nan")), {"acc": torch.tensor(0.0, dtype=torch.bfloat16), "num_pairs": 3,
                                             "margin": torch.tensor([-1.0])})]
    losses, gn, read = _read_once(pending, torch.tensor(3.25), torch.device("cpu"))
    assert losses[0] == 0.5 and math.isnan(losses[1]) and gn == 3.25
    assert read == [{"acc": 1.0, "num_pairs": 4.0, "margin": 2.5}, {"acc": 0.0, "num_pairs": 3.0, "margin": -1.0}]
    assert _read_once(pending[:1], None, torch.device("cpu"))[1] == 0.0  # no norm (no sync on that micro-step)
