"""Online preference training (``trainer: online``): rounds of sample → score → build → update.

Each round the trainer

1. **samples** ``prompts_per_round`` prompts (drawn from the prompt set without replacement,
   cycling it) × ``samples_per_prompt`` samples from the current policy (or, for a method whose
   ``rollout_model`` is ``reference``, from the reference) with per-sample generators, keeping the
   clean latents and the decoded samples (``sampling/rollouts.py``);
2. **scores** them with the reward (a plugin or a weighted sum; a set-scope reward through
   leave-one-out attribution), in a worker thread that overlaps the sampling;
3. **builds** pairs with the method's ``build`` (``data/builders.py``), dropping and counting
   prompts whose samples do not spread;
4. **updates**: ``inner_steps`` optimiser steps of the one loop (``loop.py``) on the round's pairs,
   re-noised with the method's loss (Diffusion-DPO / KTO on the shared core).

Rounds are seeded by ``(train.seed, round)``, and checkpoints fall between rounds
(``train.save_every`` is a multiple of ``inner_steps``), so a resumed run re-samples the round it
stopped before and ends with exactly the weights of an uninterrupted one. Run with::

    diffalign train configs/toy/dragon_fidelity.yaml
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data.batches import PairBatch
from ..data.prompts import read_prompts
from ..models.denoiser import Denoiser, adapters_off
from ..models.reference import ONLINE_STRATEGIES, make_reference, resolve_strategy
from ..sampling.rollouts import roll_out
from .common import make_accelerator
from .loop import Loop
from .offline import MIXED, _last_metrics, load_for_training, make_trainable, pair_batcher, save_model, start_run
from .online_config import SERVES, OnlineTrainConfig

__all__ = ["OnlineTrainer", "run"]

def build_reward(cfg):
    """The training reward of an ``OnlineRewardConfig`` (a set-scope reward wrapped in leave-one-out)."""
    from ..rewards import WeightedSum, load
    from ..rewards.set_reward import LeaveOneOut

    if cfg.name:
        reward = load(cfg.name, **cfg.kwargs)
        return LeaveOneOut(reward) if reward.spec.scope == "set" else reward
    built = {}
    for name in cfg.weights:  # set-scope components of a sum: leave-one-out over the round's samples
        r = load(name, **cfg.kwargs.get(name, {}))
        built[name] = LeaveOneOut(r) if r.spec.scope == "set" else r
    return WeightedSum(cfg.weights, rewards=built)


def eval_reward(cfg):
    """The closing evaluation's headline reward: the training reward built with its arguments when the eval
    section names it (``exemplar_similarity`` needs its exemplar set), else the eval reward's name."""
    r = cfg.reward
    if r is not None and r.name == cfg.eval.reward and r.kwargs:
        return build_reward(r)
    return cfg.eval.reward


class OnlineTrainer:
    """Online preference training of a text-to-image diffusion model.

    Args:
        cfg (OnlineTrainConfig): the validated config.
    """

    def __init__(self, cfg: OnlineTrainConfig):
        self.cfg = cfg
        loop, m, r = cfg.train, cfg.model, cfg.rollout
        self.acc = make_accelerator(loop)
        dev, wdtype = self.acc.device, MIXED[loop.mixed_precision]
        self.comp, self.method = load_for_training(cfg, self.acc, SERVES, "online")
        unet = self.comp.unet
        rc = cfg.reference
        self.strategy = resolve_strategy(rc.strategy, needs_reference=self.method.needs_reference,
                                         has_lora=m.lora is not None, known=ONLINE_STRATEGIES,
                                         auto="adapter_off" if m.lora is not None else "frozen_copy")
        ref_kw = dict(dtype=wdtype, offload=rc.offload, device=dev, every=rc.every, decay=rc.ema_decay,
                      pool_size=rc.pool_size, seed=loop.seed)
        fixed = self.strategy in ("none", "adapter_off", "frozen_copy")
        if fixed:  # taken before adapters are added
            self.reference = make_reference(self.strategy, unet, **ref_kw)
        self.unet = make_trainable(unet, m.lora, loop, wdtype, dev, m)
        if not fixed:  # moving strategies follow the adapted policy
            self.reference = make_reference(self.strategy, unet, **ref_kw)
        self.reward = build_reward(cfg.reward).to(dev).eval() if cfg.reward is not None else None
        self.batcher = None
        if self.method.needs_winners:  # dataset winners (SePPO): the rounds sample their prompts
            self.batcher = pair_batcher(cfg, self.comp, self.acc, ", their preferred images are the winners")
            self.prompts = [self.batcher.pairs.caption(p) for p in self.batcher.positions]
        else:
            self.prompts = read_prompts(r.prompts, [r.split] if r.split else None)[r.split or "prompts"]
        if not self.prompts:
            raise ValueError(f"rollout.prompts: {r.prompts or cfg.data.source} holds no prompts")
        family = self.comp.family
        self.pipe = family.pipeline_class().from_pretrained(self.comp.path, unet=self.unet, **family.pipeline_parts(self.comp))
        self.pipe.set_progress_bar_config(disable=True)
        self._text: dict[str, dict[str, torch.Tensor]] = {}
        self.round_stats: dict[str, float] = {}
        self.loop = Loop(self.acc, loop, self.unet, name=cfg.method.name,
                         states={"loss_state": self.method, "reference": self.reference})
        per_round = r.prompts_per_round * r.samples_per_prompt
        self.acc.print(
            f"[online] {len(self.prompts)} prompts; per round: {r.prompts_per_round} prompts × {r.samples_per_prompt} "
            f"samples = {per_round} samples ({r.num_inference_steps} sampler steps, guidance {r.guidance_scale}), then "
            f"{cfg.inner_steps} optimiser steps × {loop.batch_size * loop.grad_accum} pairs; "
            f"{self.total_rounds()} rounds, {loop.max_steps} steps; reference {self.strategy}")

    def total_rounds(self) -> int:
        return -(-self.cfg.train.max_steps // self.cfg.inner_steps)

    # ---- one round --------------------------------------------------------------------------
    def _score(self, samples: torch.Tensor, prompts: list[str]):
        from ..eval.audio import to_samples

        fam = self.comp.family
        rate = fam.sample_rate(self.comp) if fam.modality == "audio" else None
        out = self.reward(to_samples(samples, prompts, rate, self.acc.device))  # images [N, 3, H, W] or waves [N, T]
        details = {k: v for k, v in (out.details or {}).items() if torch.is_tensor(v) and v.shape == out.scores.shape}
        return out.scores, details

    def rollout(self, rnd: int, attempt: int = 0):
        """Sample and score round ``rnd`` (``attempt`` > 0 re-draws a round that built no pairs)."""
        r = self.cfg.rollout
        rng = np.random.default_rng([self.cfg.train.seed, rnd, attempt])
        n = len(self.prompts)
        start = (rnd * r.prompts_per_round) % n  # prompts cycle through a fixed shuffle of the set
        order = np.random.default_rng([self.cfg.train.seed, 7]).permutation(n).tolist() * (r.prompts_per_round // n + 2)
        picked = order[start : start + r.prompts_per_round]
        prompts = [self.prompts[i] for i in picked]
        seeds = rng.integers(0, 2**31 - 1, size=len(prompts) * r.samples_per_prompt).tolist()
        draw = getattr(self.reference, "draw", None)
        if draw is not None:
            self.round_stats["reference/drawn_step"] = float(draw())
        from_reference = getattr(self.method, "rollout_model", "policy") == "reference"
        pipe = self.pipe
        model = self.acc.unwrap_model(self.loop.model)
        model.eval()
        try:
            if from_reference and self.strategy == "adapter_off":
                ctx = adapters_off(model)
            else:
                import contextlib

                ctx = contextlib.nullcontext()
                if from_reference:
                    pipe.unet = self.reference.unet
            with ctx:
                t0 = time.perf_counter()
                groups = roll_out(pipe, lambda z: self.comp.family.decode_samples(self.comp, z), prompts,
                                  r.samples_per_prompt, seeds, r.guidance_scale, r.num_inference_steps,
                                  self._score if self.reward is not None else None, r.chunk, r.overlap_scoring,
                                  sampler=self.comp.family.sample_latents)
                secs = time.perf_counter() - t0
        finally:
            pipe.unet = model
            model.train()
        if self.batcher is not None:  # the winners of the prompts, in latent space: anchor rows G·K + g
            positions = [self.batcher.positions[i] for i in picked]
            groups.anchors = self.batcher.make_batch(positions, epoch=rnd).chosen.float().cpu()
        self.round_stats.update({"round": float(rnd), "rollout/samples_per_s": len(seeds) / secs})
        if groups.scores is None:
            return groups
        finite = groups.scores[torch.isfinite(groups.scores)]
        self.round_stats.update({"reward/mean": float(finite.mean()) if finite.numel() else float("nan"),
                                 "reward/std": float(finite.std()) if finite.numel() > 1 else float("nan")})
        for k, v in (groups.details or {}).items():
            fv = v[torch.isfinite(v)]
            if fv.numel():
                self.round_stats[f"reward/{k}"] = float(fv.mean())
        return groups

    def _text_of(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if missing:
            enc = self.comp.family.encode_prompts(self.comp, missing, "cpu")
            for i, p in enumerate(missing):
                self._text[p] = {k: v[i : i + 1] for k, v in enc.items()}
        return {k: torch.cat([self._text[p][k] for p in prompts]) for k in self.comp.family.text_fields}

    def batch(self, groups, pairs: torch.Tensor) -> PairBatch:
        """The ``PairBatch`` of index pairs ``[B, 2]`` (preferred first) of a round."""
        rows = torch.cat([pairs[:, 0], pairs[:, 1]])
        prompts = [groups.prompt_of(int(i)) for i in rows]
        tids = None
        if self.comp.family.modality == "image":  # SDXL micro-conditioning: the sampled size, uncropped
            h, w = groups.samples.shape[-2:]
            tids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).repeat(len(rows), 1)
        cond = self.comp.family.conditioning(self._text_of(prompts), tids)
        b = PairBatch(groups.latent(pairs[:, 0]), groups.latent(pairs[:, 1]), cond,
                      torch.ones(pairs.shape[0]), rows[: pairs.shape[0]])
        return b.to(self.acc.device)

    def batches(self, start_micro: int):
        """Micro-batches from micro-step ``start_micro`` on: each round's pairs, reshuffled and cycled."""
        cfg = self.cfg
        per_round = cfg.inner_steps * cfg.train.grad_accum
        rnd, m = divmod(start_micro, per_round)
        bs = cfg.train.batch_size
        while True:
            for attempt in range(20):
                groups = self.rollout(rnd, attempt)
                built = self.method.build(groups)
                if len(built):
                    break
            else:
                raise RuntimeError(f"round {rnd}: 20 draws built no pairs (no reward spread); check the reward")
            g = self.round_stats
            g.update({"pairs": float(len(built)), "draws": float(attempt + 1),
                      "groups_without_spread": built.stats["groups_without_spread"] / max(1, built.stats["groups"])})
            order = torch.randperm(len(built), generator=torch.Generator().manual_seed(cfg.train.seed * 7919 + rnd))
            self._maybe_grid(rnd, groups)
            t0, done = time.perf_counter(), per_round - m
            while m < per_round:
                idx = order[torch.arange(m * bs, (m + 1) * bs) % len(built)]
                yield self.batch(groups, built.pairs[idx])
                m += 1
            # the update's throughput of this round (logged with the next one): the loop's work between yields
            g["update/pairs_per_s"] = done * bs / max(time.perf_counter() - t0, 1e-9)
            rnd, m = rnd + 1, 0

    def _maybe_grid(self, rnd: int, groups) -> None:
        every = self.cfg.grid_every
        if not every or rnd % every or not self.acc.is_main_process:
            return
        from ..eval.report import save_grid

        k = groups.k
        n = min(8, len(groups.prompts))
        samples = groups.samples
        if self.comp.family.modality == "audio":  # waveforms [N, T] → spectrogram tiles [N, 3, rows, frames]
            from ..eval.audio import spectrogram_tiles

            samples = spectrogram_tiles(samples[: n * k], self.comp.family.sample_rate(self.comp))
        rows = [samples[g * k : (g + 1) * k] for g in range(n)]
        sc = groups.scores
        caps = [[groups.prompts[g] + ("" if sc is None else f" {float(sc[g * k + j]):.2f}") for j in range(k)]
                for g in range(n)]
        save_grid(rows, Path(self.cfg.train.output_dir) / "grids" / f"round-{rnd:05d}.png", captions=caps)

    # ---- the loop ---------------------------------------------------------------------------
    def compute(self, model: torch.nn.Module, batch):
        out = self.method.compute_loss(batch, Denoiser(model), self.reference.denoiser())
        pool = getattr(self.reference, "pool", None)
        extra = {} if pool is None else {"reference/pool_size": float(len(pool))}
        return out.loss, {**out.metrics, **self.round_stats, **extra}

    def train(self, until: int | None = None, on_step=None) -> dict:
        """Run the rounds (resuming when ``train.resume`` is set); returns the last metrics."""

        def after(step: int, metrics: dict) -> None:
            self.reference.update(step, self.acc.unwrap_model(self.loop.model))
            if on_step is not None:
                on_step(step, metrics)

        last = self.loop.run(self.cfg.train.max_steps, self.batches, self.compute, until, after,
                             {"trainer": "online", "method": self.cfg.method.name})
        self.unet = self.loop.model
        return last

    def save(self, path: str | Path) -> Path:
        return save_model(self.acc, self.comp, self.unet, self.cfg.model.lora is not None, path)


def run(cfg: OnlineTrainConfig) -> dict:
    """Train, save (``<output_dir>/final``), then evaluate against the base when ``eval`` is set (the
    training reward is marked as such; add independent judges in ``eval.judges``)."""
    out = Path(cfg.train.output_dir)
    state = start_run(cfg, out)
    if state == "done":
        return json.loads((out / "summary.json").read_text())
    t0 = time.time()
    # the scorer to mark beside the evaluation: the training reward, else the labeller of the winners' data
    trained_on = cfg.reward.name if cfg.reward is not None else None
    if state == "eval":  # final/ is complete; only the closing evaluation was interrupted
        acc, final = make_accelerator(cfg.train), out / "final"
        if trained_on is None and cfg.data is not None:
            from ..data.pairs import open_source

            trained_on = open_source(cfg.data.source, cfg.data.split, cfg.data.allow_eval_split).labelled_by
        summary = {"train": _last_metrics(out), "output": str(final)}
    else:
        trainer = OnlineTrainer(cfg)
        if trained_on is None and trainer.batcher is not None:
            trained_on = trainer.batcher.pairs.labelled_by
        last = trainer.train()
        final = trainer.save(out / "final")
        acc = trainer.acc
        summary = {"train": last, "train_seconds": round(time.time() - t0, 1), "output": str(final)}
        acc.print(f"saved to {final} ({summary['train_seconds']} s)")
        del trainer
    if cfg.eval is not None and acc.is_main_process:
        from ..eval import evaluate, read_prompts

        e = cfg.eval
        t1 = time.time()
        summary["eval"] = evaluate(cfg.model.path, str(final), read_prompts(e.prompts, e.splits, e.max_prompts), eval_reward(cfg),
                                   e.out or out / "eval", e.seeds_per_prompt, e.seed, e.guidance_scale,
                                   e.num_inference_steps, e.batch_size, e.grid_columns, print_fn=acc.print,
                                   judges=e.judges, shared_noise=e.shared_noise, labelled_by=trained_on)
        summary["eval_seconds"] = round(time.time() - t1, 1)
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
