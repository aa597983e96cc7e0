"""``diffalign doctor`` / ``train --check``: the config end to end in a temporary folder, nothing written to the run's."""

from pathlib import Path

import yaml

from diffalign.cli import main
from diffalign.config import to_dict
from tests.helpers import pair_rows, write_parquet

ROOT = Path(__file__).resolve().parents[2]


def _yaml(cfg, path: Path) -> str:
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return str(path)


def test_doctor_passes_a_good_diffusion_config_and_writes_nothing(dcfg, tmp_path, capsys):
    cfg = dcfg(train={"max_steps": 50, "save_every": 10},
               eval={"prompts": str(ROOT / "assets/toy/image/prompts.json"), "reward": "toy_fidelity",
                     "judges": ["toy_judge"], "max_prompts": 2})
    rc = main(["doctor", _yaml(cfg, tmp_path / "c.yaml")])
    out = capsys.readouterr().out
    assert rc == 0 and "[doctor] all checks passed" in out and "dry-run loss 0.6931" in out  # π = ref at step 0
    assert "[doctor] evaluation scorers on a first batch: ok" in out
    assert not Path(cfg.train.output_dir).exists()


def test_train_check_names_the_bad_row_of_the_first_batch(dcfg, tmp_path, capsys):
    rows = pair_rows(6)
    rows[0]["jpg_0"] = b"broken"
    cfg = dcfg(data={"source": write_parquet(rows, tmp_path / "bad.parquet")})
    rc = main(["train", _yaml(cfg, tmp_path / "c.yaml"), "--check"])
    cap = capsys.readouterr()
    assert rc == 2 and "[doctor] dry run" in cap.out.splitlines()[-1]  # the failing check is the last one printed
    assert cap.err.strip().splitlines()[-1].startswith("error: BadRow: ") and "row 0: column 'jpg_0'" in cap.err


def test_doctor_passes_a_text_config(text_cfg, tmp_path, capsys):
    rc = main(["doctor", _yaml(text_cfg(train={"max_steps": 100}), tmp_path / "t.yaml")])
    assert rc == 0 and "[doctor] all checks passed" in capsys.readouterr().out
