"""The config system: every shipped config validates; strict keys and types; overrides; registered sections."""

from pathlib import Path

import pytest

from diffalign.config import ConfigError
from diffalign.train import load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "accelerate")  # accelerate's own


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_validates(path):
    cfg = load_config(path)
    assert cfg.trainer
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), "configs open with a comment giving the command"
    assert "diffalign train" in path.read_text().split("trainer:")[0]


REAL = [p for p in ALL_CONFIGS if p.parent.name in ("sd15", "sdxl", "audioldm", "audioldm2")]


@pytest.mark.parametrize("path", REAL, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_real_model_configs_stop_in_one_line_naming_the_missing_weights(path, monkeypatch, tmp_path):
    from diffalign.models.loading import WeightsNotFound
    from diffalign.train.offline import check_paths

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing is on disk
    cfg = load_config(path)
    with pytest.raises(WeightsNotFound, match=rf"model.path: '{cfg.model.path}' is not a local folder .*huggingface-cli download"):
        check_paths(cfg)


def test_config_errors():
    base = {"trainer": "text", "model": {"build": {"model_type": "llama"}, "tokenizer": "t"}, "data": {"train": "x"}}
    with pytest.raises(ConfigError, match=r"<t>: data.train: required key is missing"):
        parse_config({**base, "data": {}}, "<t>")
    with pytest.raises(ConfigError, match=r"trainer: must be one of .* \(did you mean 'text'\?\)"):
        parse_config({**base, "trainer": "txt"}, "<t>")
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer, got float 2.5"):
        parse_config({**base, "train": {"batch_size": 2.5}}, "<t>")
    with pytest.raises(ConfigError, match=r"reference.strategy: must be one of .*did you mean 'frozen_copy'"):
        parse_config({**base, "reference": {"strategy": "frozen_cpy"}}, "<t>")
    with pytest.raises(ConfigError, match=r"model: set exactly one of model.path and model.build"):
        parse_config({**base, "model": {"path": "p", "build": {"model_type": "llama"}}}, "<t>")


def test_overrides_and_yaml_float_forms(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text((ROOT / "configs/text/toy_dpo.yaml").read_text().replace("lr: 1.0e-3", "lr: 1e-3"))
    cfg = load_config(p, ["loss.kinds={sigmoid: 1, nll: 0.005}", "train.max_steps=7"])
    assert cfg.train.lr == 1e-3 and cfg.train.max_steps == 7 and cfg.loss.kinds == {"sigmoid": 1.0, "nll": 0.005}


def test_method_section_by_name_or_mapping_and_overrides_into_it(tmp_path):
    p = tmp_path / "c.yaml"
    src = (ROOT / "configs/toy/diffusion_dpo.yaml").read_text()
    cfg = load_config(ROOT / "configs/toy/diffusion_dpo.yaml", ["method.t_min=100"])
    assert type(cfg.method).__name__ == "DiffusionDPOConfig" and (cfg.method.t_min, cfg.method.t_max) == (100, 1000)
    head, _, rest = src.partition("method:\n")
    short = head + "method: diffusion_dpo\n" + rest.split("\n", 3)[3]  # drop the three field lines
    p.write_text(short)
    cfg = load_config(p, ["method.snr_gamma=5"])
    assert cfg.method.name == "diffusion_dpo" and cfg.method.t_min == 0 and cfg.method.snr_gamma == 5.0
    with pytest.raises(ConfigError, match=r"c.yaml: method: expected a name or a mapping with a 'name' key"):
        load_config(p, ["method=[1]"])
