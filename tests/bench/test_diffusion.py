"""``diffalign bench diffusion``: figures with and without the latent cache."""

import json


def test_cli_bench_diffusion(dcfg, tmp_path, capsys):
    import yaml

    from diffalign.cli import main
    from diffalign.config import to_dict

    cfg = to_dict(dcfg(train={"batch_size": 2}))
    path = tmp_path / "c.yaml"
    path.write_text("# diffalign train c.yaml\n" + yaml.safe_dump(cfg))
    out = tmp_path / "bench.json"
    assert main(["bench", "diffusion", "--config", str(path), "--steps", "1", "--warmup", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "latent cache" in text and "no cache" in text and "pairs/s" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["cache"] for r in rows] == [True, False] and all(r["pairs_per_s"] > 0 and r["steps"] == 1 for r in rows)
