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

from ..data.prompts import read_prompts

__all__ = ["read_prompts", "evaluate", "sample_rows"]


def sample_rows(prompts: list[str], seeds_per_prompt: int, seed: int = 0,
                shared_noise: bool = False) -> tuple[list[str], list[int]]:
    """The (prompt, seed) rows of one split: prompt j, slot k → seed ``seed + j · seeds_per_prompt + k`` (every
    row its own noise), or ``seed + k`` with ``shared_noise`` (every prompt the same ``seeds_per_prompt`` noises)."""
    rows = [p for p in prompts for _ in range(seeds_per_prompt)]
    if shared_noise:
        return rows, [seed + k for _ in prompts for k in range(seeds_per_prompt)]
    return rows, [seed + i for i in range(len(rows))]


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
    judges: list | tuple = (),
    labelled_by: str | None = None,
    shared_noise: bool = False,
) -> dict:
    """Compare a tuned model with its base on fixed prompts and seeds, under several scorers.

    Args:
        base (str): base pipeline folder. tuned (str): a LoRA folder or a whole pipeline folder.
        prompts (dict[str, list[str]]): split → prompts; the first split is the headline (grid).
        reward: the headline reward — a name (``diffalign.rewards.load``) or a ``Reward`` module;
            typically the reward that labelled the training data or drove training.
        out (str | Path): report folder.
        seeds_per_prompt (int): images per prompt; prompt j, slot k uses seed ``seed + j · seeds_per_prompt + k``
            (:func:`sample_rows`): every row its own initial noise, so that rows are independent and the
            row bootstrap's CIs hold.
        shared_noise (bool): slot k of every prompt uses seed ``seed + k`` instead (the scheme before
            2026-12-08): every prompt then starts from the same few noises, its rows are correlated
            across prompts and the CIs, which treat rows as independent, are too narrow.
        judges (list): more scorers (names or modules) reported beside ``reward`` — independent
            judges that neither labelled the data nor served as the training reward.
        labelled_by (str | None): the reward that labelled the training data (its provenance); the
            report marks it, and warns when it is the only scorer.

    Returns:
        dict: split → ``{"n", "scorers": {name: winrate.compare(...)}, "attributes": {name: {attr: …}}}``
        (per-attribute accuracies of base and tuned with the paired gain, from a scorer's
        ``details["<attr>_ok"]``).
    """
    import torch

    from ..faults import fault_point
    from ..rewards import load
    from ..sampling.pipeline import sample
    from . import audio as audio_eval
    from . import generate, report, winrate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scorers = {}
    for r in [reward, *judges]:
        name, module = (r, load(r)) if isinstance(r, str) else (type(r).spec.name, r)
        scorers[name] = module.to(device).eval()
    if labelled_by is not None and set(scorers) <= {labelled_by}:
        print_fn(f"warning: the only evaluation reward, {labelled_by}, labelled the training data — its win rate shows "
                 "that the model learned the labeller, not that it aligned; add an independent judge (eval.judges)")
    lora = generate.is_lora(tuned)
    rows = {s: sample_rows(ps, seeds_per_prompt, seed, shared_noise) for s, ps in prompts.items()}
    images: dict[str, dict[str, torch.Tensor]] = {"base": {}, "tuned": {}}
    pipe = generate.load_pipeline(base, device=device)
    audio = audio_eval.is_audio(pipe)
    sr = int(pipe.vocoder.config.sampling_rate) if audio else None
    sets = {n: m for n, m in scorers.items() if getattr(getattr(type(m), "spec", None), "scope", "") == "set"}
    head_ps, head_ss = next(iter(rows.values()))
    k = min(len(head_ps), batch_size, 4)  # a first small batch: a scorer that cannot work fails before the sampling
    check_scorers(scorers, sample(pipe, head_ps[:k], head_ss[:k], guidance_scale, num_inference_steps, k,
                                  progress=False), head_ps[:k], device, sample_rate=sr)
    for which in ("base", "tuned"):
        if which == "tuned":
            if lora:
                generate.load_lora(pipe, tuned)
            else:
                del pipe
                pipe = generate.load_pipeline(tuned, device=device)
        for split, (ps, ss) in rows.items():
            images[which][split] = sample(pipe, ps, ss, guidance_scale, num_inference_steps, batch_size,
                                          desc=f"{which} {split}")
            fault_point("eval")
    del pipe
    results, scores = {}, {}
    for split, (ps, _) in rows.items():
        results[split] = {"n": len(ps), "scorers": {}, "attributes": {}, "sets": {}}
        scores[split] = {}
        for name, module in scorers.items():
            if name in sets:  # one value per whole set: base set against tuned set
                results[split]["sets"][name] = audio_eval.set_compare(module, images["base"][split],
                                                                      images["tuned"][split], ps, sr, device)
                continue
            sc = {which: _score(module, images[which][split], ps, device, sr) for which in ("base", "tuned")}
            scores[split][name] = {which: v[0].tolist() for which, v in sc.items()}
            results[split]["scorers"][name] = {**winrate.compare(sc["base"][0], sc["tuned"][0]),
                                               "labelled_training_data": name == labelled_by}
            attrs = winrate.attributes(sc["base"][1], sc["tuned"][1])
            if attrs:
                results[split]["attributes"][name] = attrs
    out = Path(out)
    head = next(iter(rows))
    cols = report.spread(rows[head][0], grid_columns)  # one column per distinct prompt, spread over the split
    judge = next((n for n in reversed(list(scorers)) if "joint" in results[head]["attributes"].get(n, {})), None)
    ok = None
    if judge is not None:  # frames: green where the last judge with a joint verdict says everything is right
        ok = [[bool(v) for v in _score(scorers[judge], images[w][head][cols], [rows[head][0][i] for i in cols],
                                      device, sr)[1]["joint"]] for w in ("base", "tuned")]
    shown = [images[w][head][cols] for w in ("base", "tuned")]
    wavs = []
    if audio:  # spectrograms in the grid; the first clips of each as WAV files
        shown = [audio_eval.spectrogram_tiles(x, sr) for x in shown]
        for w in ("base", "tuned"):
            wavs += audio_eval.save_wavs(images[w][head][cols[:4]], sr, out / "audio",
                                         [f"{w}-{j:02d}" for j in range(len(cols[:4]))])
    grid = report.save_grid(shown, out / "grid.png", captions=[None, [rows[head][0][i] for i in cols]], ok=ok)
    settings = {"base": str(base), "tuned": str(tuned), "lora": lora, "reward": next(iter(scorers)),
                "judges": list(scorers)[1:], "labelled_by": labelled_by, "seed": seed,
                "seeds_per_prompt": seeds_per_prompt, "shared_noise": shared_noise, "guidance_scale": guidance_scale,
                "num_inference_steps": num_inference_steps, "splits": {s: len(p) for s, p in prompts.items()},
                "grid": grid.name, "grid_frames": judge, "audio": audio,
                "wavs": [str(w.relative_to(out)) for w in wavs]}
    report.write_report(out, settings, results)
    (out / "scores.json").write_text(json.dumps({s: {"prompts": rows[s][0], "seeds": rows[s][1], **scores[s]}
                                                  for s in rows}))
    for split, r in results.items():
        for name, res in r["scorers"].items():
            print_fn(report.summary_line(split, name, res))
        for name, res in r["sets"].items():
            print_fn(report.set_line(split, name, res))
        for name, attrs in r["attributes"].items():
            if name != labelled_by:
                print_fn(report.attribute_line(split, name, attrs))
    print_fn(f"report: {out / 'report.md'} · grid: {grid}")
    return results


def check_scorers(scorers: dict, images, prompts: list[str], device, sample_rate: int | None = None) -> None:
    """Score a first small batch with every scorer: one that raises, returns the wrong shape or no
    finite score at all stops the evaluation here, in one line naming it (not after both models
    sampled every prompt). Instance-to-set rewards may score a whole first batch NaN (prompts
    without exemplars) and are only checked for failures and shape."""
    import torch

    from .audio import to_samples

    n = len(prompts)
    for name, module in scorers.items():
        spec = getattr(type(module), "spec", None)
        try:
            res = module(to_samples(images, prompts, sample_rate, device))
        except Exception as e:  # noqa: BLE001 - any failure of a plugin is reported the same way
            msg = (str(e).strip().splitlines() or [""])[0]
            raise RuntimeError(f"eval reward {name!r} failed on a first batch of {n} images: "
                               f"{type(e).__name__}: {msg}") from None
        scores = getattr(res, "scores", None)
        want = () if getattr(spec, "scope", "instance") == "set" else (n,)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != want:
            got = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise RuntimeError(f"eval reward {name!r} returned scores of shape {got} for a first batch of {n} "
                               f"images, expected {list(want)}")
        if getattr(spec, "scope", "instance") == "instance_to_set":
            continue  # NaN is "no exemplar for this prompt" there: a first batch may legitimately have none
        if not bool(torch.isfinite(scores).any()):
            raise RuntimeError(f"eval reward {name!r} returned no finite score for a first batch of {n} images "
                               f"(e.g. {float(scores[0])}); it cannot compare base and tuned")


def _score(module, images, prompts: list[str], device, sample_rate: int | None = None) -> tuple:
    """Scores ``[N]`` and the per-attribute ``<attr>_ok`` details (numpy) of one scorer, in chunks."""
    import numpy as np
    import torch

    from .audio import to_samples

    parts, oks = [], {}
    for i in range(0, len(prompts), 256):
        res = module(to_samples(images[i : i + 256], prompts[i : i + 256], sample_rate, device))
        parts.append(res.scores.float().cpu())
        for k, v in (res.details or {}).items():
            if k.endswith("_ok") or k == "joint":
                oks.setdefault(k, []).append(v.float().cpu())
    return torch.cat(parts).numpy(), {k: np.concatenate([t.numpy() for t in v]) for k, v in oks.items()}
