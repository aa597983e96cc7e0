"""Evaluation against the base model: fixed prompts and seeds, any reward, win rate with CIs.

``evaluate`` samples the base and the tuned pipeline on the same (prompt, seed) rows, scores both
with a reward, and reports per split the mean reward of each with a 95% CI, the mean gain and
the win rate of tuned over base (ties count half) with their CIs, a grid PNG (base row over
tuned row) and ``report.json`` / ``report.md``. ``diffalign eval`` is the command line.

Importing this package does not import torch (``evaluate`` does).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_prompts", "evaluate"]


def read_prompts(path: str | Path, splits: list[str] | None = None, max_prompts: int | None = None) -> dict[str, list[str]]:
    """Prompts by split from a JSON list / ``{split: [...]}`` file or a text file (one per line).

    Returns:
        dict: split → prompts (``{"prompts": [...]}`` for a plain list); ``splits`` selects and
        orders the keys of a mapping; ``max_prompts`` keeps the first ones of each split.
    """
    return {k: v[:max_prompts] for k, v in _read_prompts(path, splits).items()}


def _read_prompts(path: str | Path, splits: list[str] | None) -> dict[str, list[str]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"eval.prompts: {p} does not exist")
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, list):
            return {"prompts": [str(x) for x in data]}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a list of prompts or a mapping split -> prompts")
        keys = splits or list(data)
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{p}: no split(s) {missing} (has {sorted(data)})")
        return {k: [str(x) for x in data[k]] for k in keys}
    return {"prompts": [line.strip() for line in p.read_text().splitlines() if line.strip()]}


def evaluate(
    base: str,
    tuned: str,
    prompts: dict[str, list[str]],
    reward,
    out: str | Path,
    seeds_per_prompt: int = 1,
    seed: int = 0,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 25,
    batch_size: int = 32,
    grid_columns: int = 16,
    device: str | None = None,
    print_fn=print,
) -> dict:
    """Compare a tuned model with its base on fixed prompts and seeds.

    Args:
        base (str): base pipeline folder. tuned (str): a LoRA folder or a whole pipeline folder.
        prompts (dict[str, list[str]]): split → prompts; the first split is the headline (grid).
        reward: a reward name (``diffalign.rewards.load``) or a ``Reward`` module.
        out (str | Path): report folder.
        seeds_per_prompt (int): images per prompt; prompt j, slot k uses seed ``seed + k``.

    Returns:
        dict: split → statistics of ``winrate.compare``.
    """
    import torch

    from ..rewards import Samples
    from ..sampling.pipeline import sample
    from . import generate, report, winrate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(reward, str):
        from ..rewards import load

        reward_name, reward = reward, load(reward)
    else:
        reward_name = type(reward).spec.name
    reward = reward.to(device).eval()
    lora = generate.is_lora(tuned)
    rows = {s: ([p for p in ps for _ in range(seeds_per_prompt)], [seed + k for _ in ps for k in range(seeds_per_prompt)])
            for s, ps in prompts.items()}
    images: dict[str, dict[str, torch.Tensor]] = {"base": {}, "tuned": {}}
    pipe = generate.load_pipeline(base, device=device)
    for which in ("base", "tuned"):
        if which == "tuned":
            if lora:
                pipe.load_lora_weights(tuned)
            else:
                del pipe
                pipe = generate.load_pipeline(tuned, device=device)
        for split, (ps, ss) in rows.items():
            images[which][split] = sample(pipe, ps, ss, guidance_scale, num_inference_steps, batch_size,
                                                   desc=f"{which} {split}")
    del pipe
    results, scores = {}, {}
    for split, (ps, _) in rows.items():
        sc = {}
        for which in ("base", "tuned"):
            parts = []
            for i in range(0, len(ps), 256):
                data = images[which][split][i : i + 256].to(device)
                parts.append(reward(Samples(data, ps[i : i + 256])).scores.float().cpu())
            sc[which] = torch.cat(parts).numpy()
        scores[split] = {k: v.tolist() for k, v in sc.items()}
        results[split] = winrate.compare(sc["base"], sc["tuned"])
    out = Path(out)
    head = next(iter(rows))
    cols = report.spread(rows[head][0], grid_columns)  # one column per distinct prompt, spread over the split
    grid = report.save_grid([images["base"][head][cols], images["tuned"][head][cols]], out / "grid.png",
                            captions=[None, [rows[head][0][i] for i in cols]])
    settings = {"base": str(base), "tuned": str(tuned), "lora": lora, "reward": reward_name, "seed": seed,
                "seeds_per_prompt": seeds_per_prompt, "guidance_scale": guidance_scale,
                "num_inference_steps": num_inference_steps, "splits": {s: len(p) for s, p in prompts.items()},
                "grid": grid.name}
    report.write_report(out, settings, results)
    (out / "scores.json").write_text(json.dumps({s: {"prompts": rows[s][0], "seeds": rows[s][1], **scores[s]}
                                                  for s in rows}))
    for split, r in results.items():
        print_fn(report.summary_line(split, reward_name, r))
    print_fn(f"report: {out / 'report.md'} · grid: {grid}")
    return results
