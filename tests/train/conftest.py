import json

import pytest

from diffalign.train import parse_config
from tests.helpers import one_thread as _one_thread  # noqa: F401  (one intra-op thread for tiny models)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def text_data(tmp_path_factory):
    """Small train/eval JSONL files cut from the toy set."""
    d = tmp_path_factory.mktemp("text_data")
    rows = [json.loads(x) for x in (ROOT / "assets/text/toy_prefs/train.jsonl").read_text().splitlines()]
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:48]) + "\n")
    (d / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows[48:64]) + "\n")
    return d


@pytest.fixture(scope="session")
def ref_cache(tmp_path_factory):
    """One reference-log-prob cache for the session (keys hash the model weights and data)."""
    return tmp_path_factory.mktemp("refcache")


@pytest.fixture
def text_cfg(text_data, ref_cache, tmp_path):
    """A factory of tiny text-DPO configs; keyword overrides go into sections."""

    def make(**sections):
        data = {
            "trainer": "text",
            "model": {
                "build": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128},
                "tokenizer": str(ROOT / "assets/text/tokenizer"),
            },
            "data": {"train": str(text_data / "train.jsonl"), "eval": str(text_data / "eval.jsonl"), "max_length": 96},
            "loss": {"kinds": "sigmoid", "beta": 0.1},
            "reference": {"strategy": "precomputed", "cache_dir": str(ref_cache)},
            "train": {"output_dir": str(tmp_path / "out"), "batch_size": 4, "max_steps": 3, "lr": 1e-3, "log_every": 1},
        }
        for sec, val in sections.items():
            if val is None or not isinstance(val, dict):
                data[sec] = val
            else:
                data.setdefault(sec, {})
                data[sec] = {**(data[sec] or {}), **val}
        return parse_config(data, "<test>")

    return make
