"""``diffalign eval`` on the command line (``diffalign.cli``)."""

import json
import subprocess
import sys


def test_eval_commands_import_without_torch():
    code = "import sys, diffalign.cli, diffalign.eval, diffalign.train.offline_config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_eval_errors_are_one_line(sd_path, lora_out, tmp_path, capsys):
    from diffalign.cli import main

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["a red circle"]))
    assert main(["eval", "--base", sd_path, "--tuned", lora_out, "--prompts", str(prompts), "--reward", "nope",
                 "--steps", "2"]) != 0  # unknown reward: one clear line
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "--base", sd_path]) == 2
    assert "needs --config, or --tuned, --prompts, --reward" in capsys.readouterr().err
