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


def test_cli_eval_of_an_online_config_without_preference_data(sd_path, lora_out, tmp_path, capsys):
    import yaml

    from diffalign.cli import main

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"train": ["a red circle"], "held_out": ["a blue square"]}))
    cfg = {"trainer": "online", "method": {"name": "dragon"}, "model": {"path": sd_path, "lora": {"r": 4, "alpha": 4}},
           "rollout": {"prompts": str(prompts), "split": "train"}, "reward": {"name": "toy_fidelity"},
           "train": {"output_dir": str(tmp_path / "out"), "max_steps": 2},
           "eval": {"prompts": str(prompts), "splits": ["held_out"], "reward": "toy_fidelity", "num_inference_steps": 2,
                    "out": str(tmp_path / "ev")}}
    (tmp_path / "online.yaml").write_text("# diffalign train online.yaml\n" + yaml.safe_dump(cfg))
    assert main(["eval", "--config", str(tmp_path / "online.yaml"), "--tuned", lora_out]) == 0
    assert (tmp_path / "ev" / "report.json").is_file()


def test_cli_eval_flags_win_over_the_config(sd_path, lora_out, tmp_path):
    """With --config, flags given on the command line (seeds, splits, steps, …) replace the config's eval
    settings instead of being silently ignored."""
    import yaml

    from diffalign.cli import main

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"train": ["a red circle"], "held_out": ["a blue square"]}))
    cfg = {"trainer": "online", "method": {"name": "dragon"}, "model": {"path": sd_path, "lora": {"r": 4, "alpha": 4}},
           "rollout": {"prompts": str(prompts), "split": "train"}, "reward": {"name": "toy_fidelity"},
           "train": {"output_dir": str(tmp_path / "out"), "max_steps": 2},
           "eval": {"prompts": str(prompts), "splits": ["held_out", "train"], "reward": "toy_fidelity",
                    "num_inference_steps": 2, "seeds_per_prompt": 1, "out": str(tmp_path / "ev")}}
    (tmp_path / "online.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["eval", "--config", str(tmp_path / "online.yaml"), "--tuned", lora_out, "--splits", "held_out",
                 "--seeds-per-prompt", "2", "--seed", "7", "--steps", "1", "--shared-noise"]) == 0
    s = json.loads((tmp_path / "ev" / "report.json").read_text())["settings"]
    assert (s["seeds_per_prompt"], s["seed"], s["num_inference_steps"], list(s["splits"])) == (2, 7, 1, ["held_out"])
    assert s["shared_noise"] is True


def test_cli_eval_config_builds_the_training_reward_with_its_arguments(tmp_path, monkeypatch):
    """``diffalign eval --config configs/toy/dragon_exemplars.yaml`` failed: its eval reward is the training
    reward, which needs its exemplar set (the reward section's kwargs), and the CLI loaded it by name alone."""
    import diffalign.eval as ev
    from diffalign.cli import main

    seen = {}
    monkeypatch.setattr(ev, "evaluate", lambda base, tuned, prompts, reward, *a, **k: seen.update(reward=reward, k=k))
    assert main(["eval", "--config", "configs/toy/dragon_exemplars.yaml", "--tuned", str(tmp_path)]) == 0
    reward = seen["reward"]
    assert type(reward).spec.name == "exemplar_similarity" and seen["k"]["labelled_by"] == "exemplar_similarity"
