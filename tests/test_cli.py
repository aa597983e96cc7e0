"""The command line: version, help, one-line errors, list commands."""

from pathlib import Path

import pytest

from diffalign import __version__
from diffalign.cli import configs_root, main
from diffalign.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs_and_the_walk_is_recursive():
    assert configs_root() == ROOT / "configs"
    assert any(p.parent != ROOT / "configs" for p in ALL_CONFIGS)  # nested folders are found


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


def test_list_commands(capsys):
    assert main(["list", "losses"]) == 0
    out = capsys.readouterr().out
    assert "sigmoid" in out and "kto" in out and "reference-free" in out
    assert main(["list", "configs"]) == 0
    assert "configs/text/toy_dpo.yaml" in capsys.readouterr().out
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "diffusion_dpo" in out and "2311.12908" in out and "needs: reference" in out
    assert main(["list", "trainers"]) == 0
    out = capsys.readouterr().out
    assert "diffusion" in out and "text" in out
