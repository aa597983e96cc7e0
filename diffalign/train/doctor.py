"""``diffalign doctor CONFIG`` (also ``diffalign train CONFIG --check``): check a config end to end in seconds.

Before a long run it checks, in order, and prints one line per check:

1. **config** — the file parses and validates (keys, types, ranges);
2. **names and paths** — every reward the config names is registered, the data and prompt files
   exist, the output folder is writable (nothing is written there but a probe);
3. **a dry run** — the same trainer, on a small slice of the data (one batch), for one optimiser
   step, in a temporary folder: the model and its weights load (safetensors only unless
   ``trust_pickle``), the data columns decode, the method's loss and gradients are finite, a
   checkpoint and the final output are written and verified;
4. **evaluation scorers** — the eval reward and judges build and score a first small batch
   (they must not raise, must return one finite score per image).

Any failure is one line naming the check, the key, file, row or column (exit status 2 or 1).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

__all__ = ["doctor"]


def _step(name: str, fn, t0: float):
    print(f"[doctor] {name} ...", flush=True)
    t = time.perf_counter()
    out = fn()
    print(f"[doctor] {name}: ok ({time.perf_counter() - t:.1f} s)", flush=True)
    return out


def _slice_rows(src: str, dst: Path, n: int) -> str:
    """The first ``n`` rows of a text-preference file, written as JSONL (the dry run's data)."""
    from ..data.text import read_rows

    rows = read_rows(src)[:n]
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(dst)


def _dry_config(cfg, tmp: Path):
    """The config of the dry run: one step on a batch-sized slice, everything written under ``tmp``."""
    from ..config import to_dict
    from . import parse_config

    d = to_dict(cfg)
    t = d["train"]
    pairs = int(t["batch_size"]) * int(t.get("grad_accum", 1))
    t.update(output_dir=str(tmp / "out"), max_steps=1, save_every=None, resume=None, overwrite=True)
    if "eval" in d:  # the eval section of the diffusion trainers: checked separately (scorers)
        d["eval"] = None
    if cfg.trainer == "text":
        d["data"]["train"] = _slice_rows(cfg.data.train, tmp / "train.jsonl", 2 * pairs)
        if cfg.data.eval:
            d["data"]["eval"] = _slice_rows(cfg.data.eval, tmp / "eval.jsonl", pairs)
        if d.get("reference", {}).get("cache_dir"):
            d["reference"]["cache_dir"] = str(tmp / "refcache")
    if isinstance(d.get("data"), dict) and "source" in d["data"]:  # diffusion pairs (offline, SePPO's winners)
        mp = d["data"].get("max_pairs")
        d["data"].update(max_pairs=min(mp, pairs) if mp else pairs, cache=False)
    if cfg.trainer == "online":
        d["inner_steps"] = 1
    return parse_config(d, f"{cfg.trainer} dry run")


def _check_eval_scorers(cfg) -> None:
    import torch

    from ..eval import check_scorers, read_prompts
    from ..rewards import load

    e = cfg.eval
    scorers = {n: load(n).eval() for n in [e.reward, *(e.judges or [])]}
    prompts = [p for ps in read_prompts(e.prompts, e.splits, 2).values() for p in ps][:2]
    g = torch.Generator().manual_seed(0)
    if all(s.spec.modality == "audio" for s in scorers.values()):  # 1 s of noise at the scorers' rate
        rate = next((s.spec.sample_rate for s in scorers.values() if s.spec.sample_rate), 16000)
        check_scorers(scorers, torch.rand(len(prompts), rate, generator=g) * 0.2 - 0.1, prompts, "cpu", sample_rate=rate)
        return
    res = getattr(getattr(cfg, "data", None), "resolution", None) or 64
    check_scorers(scorers, torch.rand(len(prompts), 3, res, res, generator=g), prompts, "cpu")


def doctor(config: str, overrides: list[str] | None = None) -> int:
    """Run the checks; print one line each; raise (one line) on the first that fails."""
    from . import load_config, run
    from .offline import check_paths, check_reward_names, check_writable

    t0 = time.perf_counter()
    cfg = _step("config", lambda: load_config(config, overrides or []), t0)

    def names_and_paths():
        check_reward_names(cfg)
        check_paths(cfg)
        check_writable(Path(cfg.train.output_dir))

    _step("reward names, paths, output folder", names_and_paths, t0)
    with tempfile.TemporaryDirectory(prefix="diffalign-doctor-") as tmp:
        dry = _dry_config(cfg, Path(tmp))
        summary = _step("dry run: load, one batch, one step, final save", lambda: run(dry), t0)
    loss = (summary.get("train") or {}).get("loss")
    if loss is not None:
        print(f"[doctor] dry-run loss {loss:.4f}")
    if getattr(cfg, "eval", None) is not None:
        _step("evaluation scorers on a first batch", lambda: _check_eval_scorers(cfg), t0)
    print(f"[doctor] all checks passed in {time.perf_counter() - t0:.1f} s: diffalign train {config} is ready to run")
    return 0
