"""Evaluation outputs: a grid PNG (base row over tuned row), ``report.json`` and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["save_grid", "write_report", "summary_line"]


def save_grid(base, tuned, path: str | Path, columns: int = 16, min_side: int = 128) -> Path:
    """Save the first ``columns`` samples: base images in the top row, tuned below.

    Args:
        base, tuned (torch.Tensor): ``[N, 3, H, W]`` in [0, 1], same prompts and seeds row by row.
        min_side (int): small images are enlarged (nearest neighbour) to at least this side.
    """
    from PIL import Image

    k = min(columns, base.shape[0])
    rows = []
    for imgs in (base[:k], tuned[:k]):
        arr = (imgs.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # [k, H, W, 3]
        rows.append(np.concatenate(list(arr), axis=1))  # [H, k·W, 3]
    grid = np.concatenate(rows, axis=0)  # [2H, k·W, 3]
    h = base.shape[-2]
    f = max(1, -(-min_side // h))
    img = Image.fromarray(grid)
    if f > 1:
        img = img.resize((img.width * f, img.height * f), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _pct(d: dict) -> str:
    return f"{100 * d['mean']:.1f}% [{100 * d['lo']:.1f}, {100 * d['hi']:.1f}]"


def _num(d: dict, signed: bool = False) -> str:
    s = "+" if signed else ""
    return f"{d['mean']:{s}.4f} [{d['lo']:{s}.4f}, {d['hi']:{s}.4f}]"


def summary_line(split: str, reward: str, r: dict) -> str:
    """One printed line per split."""
    return (f"{split}: n={r['n']} {reward} win rate vs base {_pct(r['win_rate'])} "
            f"(wins {r['wins']}, ties {r['ties']}, losses {r['losses']}); mean {r['base']['mean']:.4f} -> "
            f"{r['tuned']['mean']:.4f}, gain {_num(r['gain'], True)} (95% CI)")


def write_report(out: str | Path, settings: dict, results: dict[str, dict]) -> tuple[Path, Path]:
    """Write ``report.json`` (settings + per-split statistics) and ``report.md`` (a table)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    reward = settings.get("reward", "reward")
    lines = [
        f"# Evaluation: tuned vs base ({reward})",
        "",
        f"Base `{settings.get('base')}`, tuned `{settings.get('tuned')}`; guidance {settings.get('guidance_scale')}, "
        f"{settings.get('num_inference_steps')} steps; {settings.get('seeds_per_prompt')} seed(s) per prompt, the same "
        "for both models. 95% percentile-bootstrap intervals; ties count half.",
        "",
        f"| split | n | base mean | tuned mean | gain | win rate vs base |",
        "|---|---|---|---|---|---|",
    ]
    for split, r in results.items():
        lines.append(f"| {split} | {r['n']} | {_num(r['base'])} | {_num(r['tuned'])} | {_num(r['gain'], True)} | "
                     f"{_pct(r['win_rate'])} |")
    lines += ["", f"![base (top) vs tuned (bottom)]({settings.get('grid', 'grid.png')})", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.json", out / "report.md"
