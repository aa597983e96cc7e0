"""The bad-input suite: every case through ``diffalign train`` (in-process), each one readable line
naming the key, file, row or column — or a counted skip — and nothing left half-written.

Each test records (case, message) in ``tests.helpers.MESSAGES``; with
``DIFFALIGN_RELIABILITY_TABLE=<file>`` set, the session writes them (``conftest.py``), the source of
the README's Reliability table.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest
import yaml

from diffalign.cli import main
from tests.helpers import MESSAGES, RES, pair_rows, write_parquet


@pytest.fixture
def train_yaml(sd_path, pairs_parquet, cache_dir, tmp_path):
    """Write a tiny diffusion-DPO config (sections overridable) and return its path."""

    def make(**sections) -> str:
        data = {
            "trainer": "diffusion",
            "method": {"name": "diffusion_dpo"},
            "model": {"path": sd_path, "lora": {"r": 4, "alpha": 4, "init": "gaussian"}},
            "data": {"source": pairs_parquet, "resolution": RES, "cache_dir": cache_dir},
            "loss": {"kinds": "sigmoid", "beta": 5000.0},
            "train": {"output_dir": str(tmp_path / "out"), "batch_size": 2, "max_steps": 2, "lr": 1e-3,
                      "log_every": 1, "save_every": 1},
        }
        for sec, val in sections.items():
            data[sec] = {**data.get(sec, {}), **val} if isinstance(val, dict) else val
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return make


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the trainer gets as far as loading the model (the error must come first)."""

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr("diffalign.train.offline.load_components", refuse)


def train(capsys, config: str, *overrides: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["train", config, *overrides])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(case: str, capsys, config: str, *overrides: str, match: str) -> str:
    """Run, expect a failure reported as exactly one stderr line matching ``match``; record it."""
    import re

    rc, _, err = train(capsys, config, *overrides)
    lines = [x for x in err.splitlines() if x.strip() and "%|" not in x]  # progress bars of the loaders aside
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(match, lines[0]), lines[0]
    MESSAGES[case] = lines[0]
    return lines[0]


def bad_parquet(tmp_path, edit, n: int = 6) -> str:
    rows = pair_rows(n)
    edit(rows)
    return write_parquet(rows, tmp_path / "bad.parquet")


# ---- configs --------------------------------------------------------------------------------------------
def test_config_file_missing(capsys, tmp_path, no_model_load):
    one_line("config: missing file", capsys, str(tmp_path / "nope.yaml"), match=r"nope\.yaml.*(not found|no such|does not exist)")


def test_config_yaml_syntax_error(capsys, tmp_path, no_model_load):
    p = tmp_path / "broken.yaml"
    p.write_text("trainer: diffusion\ntrain: [unclosed\n")
    one_line("config: YAML syntax error", capsys, str(p), match=r"broken\.yaml.*line \d+")


def test_config_unknown_key(capsys, train_yaml, no_model_load):
    one_line("config: unknown key", capsys, train_yaml(), "train.lrr=1", match=r"train\.lrr: unknown key \(did you mean 'lr'\?\)")


def test_config_wrong_type(capsys, train_yaml, no_model_load):
    one_line("config: wrong type", capsys, train_yaml(), "train.batch_size=two",
             match=r"train\.batch_size: expected an integer, got str 'two'")


def test_config_lr_not_positive(capsys, train_yaml, no_model_load):
    one_line("config: lr ≤ 0", capsys, train_yaml(), "train.lr=-1", match=r"train: lr must be a finite number > 0, got -1")


def test_config_batch_zero(capsys, train_yaml, no_model_load):
    one_line("config: batch size 0", capsys, train_yaml(), "train.batch_size=0", match=r"batch_size must be .*got 0")


def test_config_t_min_not_below_t_max(capsys, train_yaml, no_model_load):
    one_line("config: t_min ≥ t_max", capsys, train_yaml(method={"t_min": 500, "t_max": 400}),
             match=r"method\.t_min/t_max must satisfy")


def test_config_t_max_beyond_the_schedule(capsys, train_yaml):
    one_line("config: t_max the schedule would clamp", capsys, train_yaml(method={"t_max": 5000}),
             match=r"method\.t_max 5000 exceeds the scheduler's 1000 training timesteps")


def test_model_path_missing(capsys, train_yaml, tmp_path):
    one_line("model: path missing", capsys, train_yaml(model={"path": str(tmp_path / "no_model")}),
             match=r"no_model")


def test_data_file_missing(capsys, train_yaml, tmp_path, no_model_load):
    one_line("data: file missing", capsys, train_yaml(data={"source": str(tmp_path / "gone.parquet")}),
             match=r"data\.source: .*gone\.parquet does not exist")


# ---- data -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,field,value,match",
    [
        ("data: corrupt image bytes", "jpg_1", b"\x89PNG not really", r"row 3: column 'jpg_1': image does not decode"),
        ("data: empty caption", "caption", "", r"row 3: column 'caption': expected a non-empty caption"),
        ("data: missing (None) caption", "caption", None, r"row 3: column 'caption': expected a non-empty caption"),
        ("data: label 2.0", "label_0", 2.0, r"row 3: column 'label_0': label must be 0, 0.5 or 1, got 2.0"),
        ("data: label NaN", "label_0", math.nan, r"row 3: column 'label_0': label must be 0, 0.5 or 1, got nan"),
    ],
)
def test_bad_row_names_file_row_and_column(capsys, train_yaml, tmp_path, case, field, value, match):
    src = bad_parquet(tmp_path, lambda rows: rows[3].__setitem__(field, value))
    one_line(case, capsys, train_yaml(data={"source": src}), match=rf"bad\.parquet: {match}")


def test_bad_row_is_a_counted_skip_when_allowed(capsys, train_yaml, tmp_path):
    src = bad_parquet(tmp_path, lambda rows: rows[3].__setitem__("jpg_1", b"garbage"))
    rc, out, err = train(capsys, train_yaml(data={"source": src, "on_bad_row": "skip"}))
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("[data]"))
    assert "1 bad rows skipped" in line and "5 pairs" in line
    MESSAGES["data: bad row with on_bad_row: skip"] = line


def test_missing_column(capsys, train_yaml, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "label_0"} for r in pair_rows(4)]
    src = write_parquet(rows, tmp_path / "nolabel.parquet")
    one_line("data: missing column", capsys, train_yaml(data={"source": src}), match=r"row 0: column 'label_0' is missing")


def test_zero_rows(capsys, train_yaml, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(pair_rows(2)).slice(0, 0)
    pq.write_table(table, str(tmp_path / "empty.parquet"))
    one_line("data: zero rows", capsys, train_yaml(data={"source": str(tmp_path / "empty.parquet")}),
             match=r"empty\.parquet: no usable pairs")


def test_truncated_parquet(capsys, train_yaml, tmp_path):
    src = Path(bad_parquet(tmp_path, lambda rows: None))
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    one_line("data: truncated parquet", capsys, train_yaml(data={"source": str(src)}), match=r"bad\.parquet.*(parquet|corrupt|truncated)")


def test_mixed_image_sizes_are_resized_to_the_resolution(capsys, train_yaml, tmp_path):
    import numpy as np

    from tests.helpers import png

    rng = np.random.default_rng(3)

    def edit(rows):
        for i, r in enumerate(rows):
            r["jpg_0"], r["jpg_1"] = png(rng, 16 + 7 * i, 40 - 3 * i), png(rng, 64, 12 + 5 * i)

    src = bad_parquet(tmp_path, edit)
    rc, out, err = train(capsys, train_yaml(data={"source": src}))
    assert rc == 0, err
    assert (tmp_path / "out" / "final" / "COMPLETE").is_file()
    MESSAGES["data: mixed image sizes"] = f"trains: every image resized and centre-cropped to data.resolution ({RES} px)"


def test_corrupt_audio_bytes_name_the_item():
    from diffalign.toy.audio.assets import decode_audio, flac_bytes

    good = flac_bytes([[0.0] * 1600])[0]
    with pytest.raises(ValueError, match=r"clips\[1\]: audio does not decode") as e:
        decode_audio([good, b"RIFF not audio"], where="clips")
    MESSAGES["data: corrupt audio bytes"] = f"error: ValueError: {e.value}"


def test_wrong_sample_rate_is_an_error():
    import io

    import soundfile as sf

    from diffalign.toy.audio.assets import decode_audio

    buf = io.BytesIO()
    sf.write(buf, [0.0] * 2205, 22050, format="WAV")
    with pytest.raises(ValueError, match=r"clips\[0\]: sample rate 22050 Hz, expected 16000 Hz") as e:
        decode_audio([buf.getvalue()], where="clips")
    MESSAGES["data: wrong sample rate"] = f"error: ValueError: {e.value}"


# ---- rewards named in the config ------------------------------------------------------------------------
def test_unknown_eval_reward_fails_before_training(capsys, train_yaml, no_model_load):
    cfg = train_yaml(eval={"prompts": str(Path(__file__).parents[2] / "assets/toy/image/prompts.json"),
                           "reward": "toy_fidelty", "max_prompts": 1})
    one_line("reward: unknown name", capsys, cfg, match=r"eval\.reward: unknown reward 'toy_fidelty'; registered: ")


def test_unknown_judge_fails_before_training(capsys, train_yaml, no_model_load):
    cfg = train_yaml(eval={"prompts": str(Path(__file__).parents[2] / "assets/toy/image/prompts.json"),
                           "reward": "toy_fidelity", "judges": ["toy_judge", "nope"], "max_prompts": 1})
    one_line("reward: unknown judge", capsys, cfg, match=r"eval\.judges\[1\]: unknown reward 'nope'")


# ---- disk -----------------------------------------------------------------------------------------------
def test_read_only_output_folder(capsys, train_yaml, tmp_path, monkeypatch, no_model_load):
    ro = tmp_path / "ro"
    real = Path.write_text

    def write_text(self, *a, **k):  # the file system refuses writes under ro/ (root ignores chmod)
        if ro in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    one_line("disk: read-only output folder", capsys, train_yaml(), f"train.output_dir={ro}",
             match=r"train\.output_dir .*ro is not writable \(Read-only file system\)")


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(capsys, train_yaml, tmp_path, monkeypatch):
    from diffalign.train import checkpoint

    real, calls = checkpoint.save_file, []

    def save_file(tensors, path, *a, **k):
        calls.append(path)
        if "checkpoint-00000002" in str(path) and path.name == "optimizer.safetensors":
            with open(path, "wb") as fh:  # a partial file, then the disk is full
                fh.write(b"\0" * 1024)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    out = tmp_path / "out"
    one_line("disk: full during a checkpoint", capsys, train_yaml(), "train.max_steps=3",
             match=r"could not write the checkpoint .*checkpoint-00000002 \(No space left on device\); "
                   r"the previous checkpoint checkpoint-00000001 is intact")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".tmp", ".trash", "checkpoint"))) == ["checkpoint-00000001"]
    checkpoint.verify_folder(out / "checkpoint-00000001")


# ---- numerics -------------------------------------------------------------------------------------------
def test_huge_lr_stops_at_the_first_non_finite_step(capsys, train_yaml, tmp_path):
    out = tmp_path / "out"
    line = one_line("numerics: lr 1e12 (loss or gradient not finite)", capsys, train_yaml(), "train.lr=1e12",
                    "train.max_steps=6", match=r"NonFiniteError: step \d+: (the loss|the gradient norm).* is (nan|inf).*train\.lr")
    assert not (out / "final").exists()
    from safetensors.torch import load_file

    for ck in out.glob("checkpoint-*"):  # every checkpoint written before the stop is finite
        assert all(bool(v.isfinite().all()) for v in load_file(ck / "trainable.safetensors").values()), line


def test_non_finite_steps_are_skipped_and_counted_when_configured(capsys, train_yaml, tmp_path):
    rc, out, err = train(capsys, train_yaml(), "train.lr=1e12", "train.max_steps=4", "train.on_nonfinite=skip",
                         "train.max_nonfinite_skips=10")
    lines = [x for x in out.splitlines() if x.startswith("[numerics]")]
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    if rc == 0:  # every non-finite update was dropped: the saved weights are finite
        assert rows[-1]["nonfinite_skipped"] == len(lines) >= 1
    else:  # more skips than allowed stop the run with one line
        assert "max_nonfinite_skips" in err
    MESSAGES["numerics: non-finite step with on_nonfinite: skip"] = lines[0]


def test_final_save_refuses_non_finite_weights(tmp_path):
    import torch

    from diffalign.train.checkpoint import save_final
    from diffalign.train.common import NonFiniteError, check_finite

    w = {"unet.lora_A": torch.tensor([1.0, math.nan])}
    with pytest.raises(NonFiniteError, match=r"final output: unet\.lora_A holds 1 non-finite values of 2; refusing to save it") as e:
        save_final(tmp_path / "final", lambda d: (d / "x").write_text("x"), w, check_finite)
    assert not (tmp_path / "final").exists() and not list(tmp_path.glob(".tmp-*"))
    MESSAGES["numerics: final save of non-finite weights"] = f"error: NonFiniteError: {e.value}"


# ---- resume ---------------------------------------------------------------------------------------------
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(capsys, train_yaml, tmp_path):
    cfg = train_yaml()
    rc, _, err = train(capsys, cfg, "train.max_steps=3", "train.keep_checkpoints=3")
    out = tmp_path / "out"
    newest = out / "checkpoint-00000002"
    (newest / "trainable.safetensors").write_bytes(b"not safetensors at all")
    import shutil

    shutil.rmtree(out / "final")
    (out / "summary.json").unlink(missing_ok=True)
    rc, stdout, err = train(capsys, cfg, "train.max_steps=3", "train.keep_checkpoints=3", "train.resume=latest")
    assert rc == 0, err
    warn = [x for x in stdout.splitlines() if x.startswith("[resume] warning")]
    assert len(warn) == 1 and "checkpoint-00000002" in warn[0] and "[resume]" in stdout
    assert "checkpoint-00000001 (step 1)" in stdout
    MESSAGES["resume: newest checkpoint corrupt"] = warn[0]


def test_a_finished_run_does_nothing(capsys, train_yaml, tmp_path):
    cfg = train_yaml()
    assert train(capsys, cfg)[0] == 0
    before = (tmp_path / "out" / "metrics.jsonl").read_text()
    rc, out, _ = train(capsys, cfg)
    assert rc == 0 and "nothing to do" in out
    assert (tmp_path / "out" / "metrics.jsonl").read_text() == before
    MESSAGES["resume: re-running a finished run"] = out.strip().splitlines()[-1]
