"""Evaluation outputs: grid PNGs (base row over tuned row; the toy reports' captioned grids), ``report.json``
and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["save_grid", "spread", "write_report", "summary_line", "attribute_line"]


def save_grid(rows, path: str | Path, captions=None, ok=None, min_side: int = 96) -> Path:
    """A PNG of ``R`` rows of ``K`` images, each optionally captioned and framed (green: right, red: wrong).

    The one grid writer of the project: the evaluation's base-over-tuned grid and the toy reports'
    captioned grids.

    Args:
        rows (list): ``R`` tensors ``[K, 3, H, W]`` in [0, 1] (e.g. ``[base, tuned]``, the same prompts
            and seeds column by column).
        captions (list | None): per row, ``K`` strings or None (no caption line under that row); a
            caption with ``"\n"`` is shown as those two lines, else split at " on a " (toy prompts).
        ok (list | None): per row, ``K`` bools (frame colour) or None (no frame).
        min_side (int): small images are enlarged (nearest neighbour) to at least this side.
    """
    from PIL import Image, ImageDraw

    n_rows, k = len(rows), max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    f = max(1, -(-min_side // h))
    th, tw, pad = h * f, w * f, 6
    cap_h = [24 if captions is not None and captions[r] is not None else 0 for r in range(n_rows)]
    grid = Image.new("RGB", (k * (tw + pad) + pad, sum(th + pad + c for c in cap_h) + pad), "white")
    draw = ImageDraw.Draw(grid)
    y = pad
    for r, imgs in enumerate(rows):
        arr = (imgs.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # [K, H, W, 3]
        for i in range(arr.shape[0]):
            x = pad + i * (tw + pad)
            if ok is not None and ok[r] is not None:
                colour = (0, 160, 0) if ok[r][i] else (200, 0, 0)
                draw.rectangle([x - 3, y - 3, x + tw + 2, y + th + 2], outline=colour, width=3)
            grid.paste(Image.fromarray(arr[i]).resize((tw, th), Image.NEAREST), (x, y))
            if cap_h[r]:
                text = str(captions[r][i])  # two lines: given with "\n", else "<object> / <background>"
                words = text.split("\n") if "\n" in text else text.replace(" background", "").replace("a ", "", 1).split(" on a ")
                for line_no, line in enumerate(words[:2]):
                    draw.text((x, y + th + 2 + 10 * line_no), line[: max(8, tw // 5)], fill=(0, 0, 0))
        y += th + pad + cap_h[r]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def spread(prompts: list[str], k: int) -> list[int]:
    """Indices of ``k`` rows spread over the distinct prompts (the first row of each prompt, evenly
    subsampled), so a grid shows many prompts rather than the first rows of the list."""
    firsts = list(dict.fromkeys(prompts))
    first_row = {p: prompts.index(p) for p in firsts}
    if len(firsts) >= k:
        step = len(firsts) / k
        return [first_row[firsts[int(i * step)]] for i in range(k)]
    return sorted(range(len(prompts)), key=lambda i: (prompts[: i + 1].count(prompts[i]), i))[:k]


def _pct(d: dict) -> str:
    return f"{100 * d['mean']:.1f}% [{100 * d['lo']:.1f}, {100 * d['hi']:.1f}]"


def _num(d: dict, signed: bool = False) -> str:
    s = "+" if signed else ""
    return f"{d['mean']:{s}.4f} [{d['lo']:{s}.4f}, {d['hi']:{s}.4f}]"


def summary_line(split: str, reward: str, r: dict) -> str:
    """One printed line per split and scorer (marked when the scorer labelled the training data)."""
    mark = " [labelled the training data]" if r.get("labelled_training_data") else ""
    if not r["n"]:
        return f"{split}: n=0 {reward}: not applicable to any sample of this split (it scored NaN){mark}"
    return (f"{split}: n={r['n']} {reward} win rate vs base {_pct(r['win_rate'])} "
            f"(wins {r['wins']}, ties {r['ties']}, losses {r['losses']}); mean {r['base']['mean']:.4f} -> "
            f"{r['tuned']['mean']:.4f}, gain {_num(r['gain'], True)} (95% CI){mark}")


def set_line(split: str, reward: str, r: dict) -> str:
    """One printed line per split and set-scope scorer (the value of each whole set)."""
    better = "higher" if r.get("higher_is_better", True) else "lower"
    return (f"{split}: n={r['n']} {reward} (set, {better} is better) base {_num(r['base'])} -> tuned {_num(r['tuned'])}, "
            f"change {_num(r['gain'], True)} (95% CI, bootstrap over rows)")


def _acc(a: dict) -> str:
    g = a["gain"]
    return (f"{100 * a['base']['mean']:.1f} → {100 * a['tuned']['mean']:.1f}% "
            f"({100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}])")


def attribute_line(split: str, scorer: str, attrs: dict) -> str:
    """Per-attribute accuracies base → tuned with the paired gain in points (95% CIs)."""
    return f"{split}: {scorer} accuracy base → tuned (gain, points): " + " · ".join(
        f"{k} {_acc(a)}" for k, a in attrs.items())


def write_report(out: str | Path, settings: dict, results: dict[str, dict]) -> tuple[Path, Path]:
    """Write ``report.json`` (settings + per-split statistics) and ``report.md`` (tables)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    lines = [
        "# Evaluation: tuned vs base",
        "",
        f"Base `{settings.get('base')}`, tuned `{settings.get('tuned')}`; guidance {settings.get('guidance_scale')}, "
        f"{settings.get('num_inference_steps')} steps; {settings.get('seeds_per_prompt')} seed(s) per prompt, the same "
        "for both models. 95% intervals (percentile bootstrap; Wilson for accuracies); ties count half.",
        "",
    ]
    if settings.get("labelled_by"):
        lines += [f"`{settings['labelled_by']}` labelled the training data: its figures show what the model learned "
                  "of the labeller; the other scorers did not label the data.", ""]
    lines += ["| split | scorer | n | base mean | tuned mean | gain | win rate vs base |", "|---|---|---|---|---|---|---|"]
    for split, r in results.items():
        for name, x in r["scorers"].items():
            mark = " (labeller)" if x.get("labelled_training_data") else ""
            if not x["n"]:
                lines.append(f"| {split} | {name}{mark} | 0 | — | — | — | not applicable (NaN) |")
                continue
            lines.append(f"| {split} | {name}{mark} | {x['n']} | {_num(x['base'])} | {_num(x['tuned'])} | "
                         f"{_num(x['gain'], True)} | {_pct(x['win_rate'])} |")
    set_rows = [(split, name, x) for split, r in results.items() for name, x in r.get("sets", {}).items()]
    if set_rows:
        lines += ["", "| split | set scorer | n | base set | tuned set | change | better |", "|---|---|---|---|---|---|---|"]
        for split, name, x in set_rows:
            lines.append(f"| {split} | {name} | {x['n']} | {_num(x['base'])} | {_num(x['tuned'])} | {_num(x['gain'], True)} "
                         f"| {'higher' if x.get('higher_is_better', True) else 'lower'} |")
    attr_rows = [(split, name, k, a) for split, r in results.items() for name, attrs in r["attributes"].items()
                 for k, a in attrs.items()]
    if attr_rows:
        lines += ["", "| split | scorer | attribute | n | base | tuned | gain, points |", "|---|---|---|---|---|---|---|"]
        for split, name, k, a in attr_rows:
            g = a["gain"]
            lines.append(f"| {split} | {name} | {k} | {a['n']} | {_pct(a['base'])} | {_pct(a['tuned'])} | "
                         f"{100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}] |")
    frames = f"; frames: {settings['grid_frames']} (green: everything right)" if settings.get("grid_frames") else ""
    what = "spectrograms, " if settings.get("audio") else ""
    lines += ["", f"![{what}base (top) vs tuned (bottom){frames}]({settings.get('grid', 'grid.png')})", ""]
    if settings.get("wavs"):
        lines += ["Audio: " + ", ".join(f"[{Path(w).name}]({w})" for w in settings["wavs"]), ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.json", out / "report.md"
