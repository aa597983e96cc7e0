"""The command line and the config system."""

from pathlib import Path

import pytest

from diffalign import __version__
from diffalign.cli import configs_root, main
from diffalign.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
ALL_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs_and_the_walk_is_recursive():
    assert configs_root() == ROOT / "configs"
    assert any(p.parent != ROOT / "configs" for p in ALL_CONFIGS)  # nested folders are found


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_validates(path):
    cfg = load_config(path)
    assert cfg.trainer
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), "configs open with a comment giving the command"
    assert "diffalign train" in path.read_text().split("trainer:")[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("sub", ["train", "list", "bench"])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out


def test_typo_and_wrong_type_fail_with_the_key_path(tmp_path, capsys):
    src = (ROOT / "configs/text/toy_dpo.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(src.replace("  beta: 0.1", "  betta: 0.1"))
    assert main(["train", str(typo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "typo.yaml: loss.betta: unknown key (did you mean 'beta'?)" in err
    assert main(["train", str(ROOT / "configs/text/toy_dpo.yaml"), "train.lr=fast"]) == 2
    assert "train.lr: expected a number, got str 'fast'" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])


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


def test_list_commands(capsys):
    assert main(["list", "losses"]) == 0
    out = capsys.readouterr().out
    assert "sigmoid" in out and "kto" in out and "reference-free" in out
    assert main(["list", "configs"]) == 0
    assert "configs/text/toy_dpo.yaml" in capsys.readouterr().out
    assert main(["list", "methods"]) == 0
