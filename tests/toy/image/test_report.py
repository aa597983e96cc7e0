"""`diffalign toy report image` on a few held-out prompts with the committed assets."""

import json

def test_report_runs_on_a_few_prompts(image_assets, tmp_path, capsys):
    from diffalign.toy.commands import main

    assert main(["toy", "report", "image", "--n", "6", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "toy_fidelity_graded" in printed and "joint_accuracy" in printed and "toy_clip" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 6 and report["sampling"]["num_inference_steps"] == 25
    assert 0 <= report["base"]["toy_fidelity_graded"]["mean"] <= 1
    assert report["ground_truth_renders"]["joint_accuracy"]["mean"] >= 0.8
    assert (tmp_path / "grid.png").stat().st_size > 1000
