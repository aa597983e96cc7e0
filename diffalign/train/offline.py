"""Offline preference training of SD 1.5/2.x and SDXL on image pairs (``trainer: diffusion``).

The trainer loops; the method (``diffalign.methods``) computes the loss on the shared core. It
branches only on what the method declares (``needs_reference``). Reference: the policy with its
LoRA adapters disabled (no second U-Net), or a frozen copy (optionally CPU-offloaded) for full
fine-tuning. Accelerate provides devices, mixed precision, gradient accumulation and multi-GPU;
latents and text embeddings come from a cache (``data/cache.py``) or are encoded every step.
Run with::

    diffalign train configs/toy/diffusion_dpo.yaml
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import to_dict
from ..data.cache import LatentCache, cache_key, fingerprint
from ..data.pairs import load_pairs
from ..data.transforms import decode, pair_rng, prepare
from ..methods import method_class
from ..methods.base import AdapterOffDenoiser, Denoiser, FrozenDenoiser, PairBatch
from ..models.families import (
    empty_conditioning,
    encode_images,
    encode_prompts,
    load_components,
    pipeline_class,
    time_ids,
)
from ..models.lora import add_lora, save_lora
from .common import (
    epoch_order,
    find_checkpoint,
    format_metrics,
    load_checkpoint,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    save_checkpoint,
)
from .offline_config import DiffusionTrainConfig

__all__ = ["DiffusionTrainer", "run"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_MP = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_CACHE_VERSION = 1


class DiffusionTrainer:
    """Preference training of a text-to-image diffusion model.

    Args:
        cfg (DiffusionTrainConfig): the validated config.
    """

    def __init__(self, cfg: DiffusionTrainConfig):
        self.cfg = cfg
        loop, m, d = cfg.train, cfg.model, cfg.data
        self.acc = make_accelerator(loop)
        dev, wdtype = self.acc.device, _MP[loop.mixed_precision]
        torch.manual_seed(loop.seed)
        self.comp = load_components(m.path, m.family, m.vae, vae_dtype=m.vae_dtype, prediction_type=m.prediction_type)
        self.method = method_class(cfg.method).from_config(cfg, self.comp)
        for enc in self.comp.text_encoders:
            enc.to(dev, dtype=wdtype)
        self.comp.vae.to(dev)
        unet = self.comp.unet
        self.strategy = self._reference_strategy()
        self.ref_unet = None
        if self.strategy == "frozen_copy":
            self.ref_unet = copy.deepcopy(unet).requires_grad_(False).eval()
            if wdtype != torch.float32:
                self.ref_unet.to(wdtype)  # no gradients: the compute dtype is enough (official: fp16 ref_unet)
            if cfg.reference.offload:
                from accelerate import cpu_offload

                cpu_offload(self.ref_unet, execution_device=dev)
            else:
                self.ref_unet.to(dev)
        if m.lora is not None:
            lc = m.lora
            if wdtype != torch.float32:
                unet.to(wdtype)  # frozen base weights in the compute dtype; adapters stay fp32 (diffusers recipe)
            add_lora(unet, lc.r, lc.alpha, lc.dropout, lc.target_modules, lc.init)
            for p in unet.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        else:
            unet.requires_grad_(True)
        if loop.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.unet = unet.to(dev).train()
        # data: checked pairs, then (optionally) the latent cache
        self.pairs = load_pairs(d.source, d.split, (d.caption_column, d.image_0_column, d.image_1_column, d.label_column),
                                d.on_bad_row, d.ties, d.max_pairs, d.allow_eval_split)
        self.acc.print(f"[data] {self.pairs.source.name}: {len(self.pairs)} pairs"
                       f" ({self.pairs.ties} ties dropped, {self.pairs.skipped} bad rows skipped)")
        self.empty = empty_conditioning(self.comp, dev)  # caption dropout: the pipeline's unconditional input
        self.cache = self._build_cache() if d.cache else None
        self.positions = self.cache.positions() if self.cache else list(range(len(self.pairs)))
        if self.cache is not None and (sk := self.cache.skipped()):
            self.acc.print(f"[data] caching skipped {len(sk)} rows that did not decode, e.g. {sk[0]}")
        if self.cache is not None:  # training reads latents: the encoders can leave the device
            self.comp.vae.to("cpu")
            for enc in self.comp.text_encoders:
                enc.to("cpu")

    def _reference_strategy(self) -> str:
        if not self.method.needs_reference:
            return "none"
        s = self.cfg.reference.strategy
        return ("adapter_off" if self.cfg.model.lora is not None else "frozen_copy") if s == "auto" else s

    # ---- data ---------------------------------------------------------------------------
    def _cache_folder(self) -> tuple[Path, dict]:
        d, c = self.cfg.data, self.comp
        subs = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
        parts = {
            "version": _CACHE_VERSION, "family": c.family,
            "model": fingerprint(c.path, tuple(s for s in subs if (Path(c.path) / s).exists())),
            "vae": fingerprint(self.cfg.model.vae) if self.cfg.model.vae else None,
            "vae_dtype": self.cfg.model.vae_dtype, "text_dtype": str(self.comp.text_encoders[0].dtype),
            "data": fingerprint(d.source), "split": d.split, "columns": [d.caption_column, d.image_0_column,
                                                                       d.image_1_column, d.label_column],
            "ties": d.ties, "on_bad_row": d.on_bad_row, "max_pairs": d.max_pairs, "n": len(self.pairs),
            "resolution": d.resolution, "crop": d.crop, "hflip": d.hflip, "dtype": d.cache_dtype,
        }
        return Path(d.cache_dir) / cache_key(parts), parts

    def _build_cache(self) -> LatentCache:
        folder, parts = self._cache_folder()
        cache = LatentCache(folder, len(self.pairs), settings=parts)
        if self.acc.is_main_process:
            cache.build(self._encode_for_cache, batch=32, disable=not self.acc.is_local_main_process)
        self.acc.wait_for_everyone()
        return cache

    def _images(self, positions: list[int], flips: list[bool], offsets) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode, preprocess and VAE-encode both images of each pair: latents ``[2B, C, h, w]`` and
        time ids ``[2B, 6]`` (chosen rows first)."""
        d = self.cfg.data
        prepared = [[], []]
        for p, flip, off in zip(positions, flips, offsets):
            for k, blob in enumerate(self.pairs.images(p)):
                try:
                    im = decode(blob)
                except Exception as e:  # noqa: BLE001
                    col = self.pairs.columns[1 + (self.pairs.pairs[p].chosen if k == 0 else 1 - self.pairs.pairs[p].chosen)]
                    raise ValueError(f"{self.pairs.source.name}: row {self.pairs.pairs[p].row}: column {col!r}: "
                                     f"image does not decode ({e})") from None
                prepared[k].append(prepare(im, d.resolution, d.crop, flip, off))
        allp = prepared[0] + prepared[1]
        pixels = torch.stack([x.pixels for x in allp])
        lat = torch.cat([encode_images(self.comp, pixels[i : i + 32]) for i in range(0, len(allp), 32)])
        r = (d.resolution, d.resolution)
        tids = torch.stack([time_ids(x.original_size, x.crop_top_left, r) for x in allp])
        return lat, tids

    def _encode_for_cache(self, positions: list[int]) -> tuple[dict, list[str]]:
        dt = _DTYPES[self.cfg.data.cache_dtype]
        kept, skipped = [], []
        for p in positions:
            try:
                for blob in self.pairs.images(p):
                    decode(blob)
                kept.append(p)
            except Exception as e:  # noqa: BLE001 — any decode failure makes the row bad
                msg = f"{self.pairs.source.name}: row {self.pairs.pairs[p].row}: image does not decode ({e})"
                if self.cfg.data.on_bad_row != "skip":
                    raise ValueError(msg) from None
                skipped.append(msg)
        b = len(kept)
        out = {"position": torch.tensor(kept, dtype=torch.long)}
        for suffix, flip in [("", False)] + ([("_flip", True)] if self.cfg.data.hflip else []):
            lat, tids = self._images(kept, [flip] * b, [(0.5, 0.5)] * b) if b else (torch.zeros(0), torch.zeros(0, 6))
            out["chosen" + suffix], out["rejected" + suffix] = lat[:b].to(dt), lat[b:].to(dt)
            out["time_ids_chosen" + suffix], out["time_ids_rejected" + suffix] = tids[:b], tids[b:]
        caps = [self.pairs.caption(p) for p in kept]
        uniq = sorted(set(caps))
        out["prompt_index"] = torch.tensor([uniq.index(c) for c in caps], dtype=torch.long)
        if uniq:
            enc = encode_prompts(self.comp, uniq)
            out["u_encoder_hidden_states"] = enc["encoder_hidden_states"].to("cpu", dt)
            if "text_embeds" in enc:
                out["u_text_embeds"] = enc["text_embeds"].to("cpu", dt)
        return {k: v.cpu().contiguous() for k, v in out.items()}, skipped

    def make_batch(self, positions: list[int], epoch: int) -> PairBatch:
        """The ``PairBatch`` of some pairs in one epoch (augmentation from ``pair_rng``)."""
        d, dev = self.cfg.data, self.acc.device
        flips, offsets, drops = [], [], []
        for p in positions:
            g = pair_rng(self.cfg.train.seed, epoch, p)
            u = g.random(4)  # always four draws: flip, crop y, crop x, caption dropout
            flips.append(bool(d.hflip and u[0] < 0.5))
            offsets.append((float(u[1]), float(u[2])))
            drops.append(bool(u[3] < d.caption_dropout))
        b = len(positions)
        label = torch.tensor([self.pairs.pairs[p].label for p in positions])
        if self.cache is not None:
            names = ["chosen", "rejected", "time_ids_chosen", "time_ids_rejected"]
            t = self.cache.get(positions, names + ([n + "_flip" for n in names] if d.hflip else []))
            f = torch.tensor(flips)

            def pick(n: str) -> torch.Tensor:  # the flipped variant where the pair is flipped this epoch
                return torch.where(f.view(-1, *[1] * (t[n].ndim - 1)), t[n + "_flip"], t[n]) if d.hflip else t[n]

            chosen, rejected = pick("chosen").float(), pick("rejected").float()
            tids = torch.cat([pick("time_ids_chosen"), pick("time_ids_rejected")])
            u = ["u_encoder_hidden_states"] + (["u_text_embeds"] if self.comp.family == "sdxl" else [])
            text = self.cache.get(positions, u)
            ehs = text["u_encoder_hidden_states"].to(dev, torch.float32)
            te = text["u_text_embeds"].to(dev, torch.float32) if "u_text_embeds" in text else None
        else:
            lat, tids = self._images(positions, flips, offsets)
            chosen, rejected = lat[:b], lat[b:]
            enc = encode_prompts(self.comp, [self.pairs.caption(p) for p in positions], dev)
            ehs, te = enc["encoder_hidden_states"], enc.get("text_embeds")
        drop = torch.tensor(drops, device=dev)
        ehs = torch.where(drop[:, None, None], self.empty["encoder_hidden_states"].to(ehs), ehs)
        if te is not None:
            te = torch.where(drop[:, None], self.empty["text_embeds"].to(te), te)
        sdxl = self.comp.family == "sdxl"
        return PairBatch(chosen, rejected, ehs, te, tids if sdxl else None, label,
                         torch.tensor(positions)).to(dev)

    # ---- loop ---------------------------------------------------------------------------
    def _local(self) -> list[int]:
        return self.positions[self.acc.process_index :: self.acc.num_processes]

    def total_steps(self) -> int:
        loop = self.cfg.train
        if loop.max_steps is not None:
            return loop.max_steps
        return max(1, loop.epochs * math.ceil(len(self._local()) / loop.batch_size) // loop.grad_accum)

    def micro_batches(self, start_micro: int):
        """Yield ``PairBatch`` es from micro-step ``start_micro`` on (epoch orders from the seed)."""
        loop, pos = self.cfg.train, self._local()
        per_epoch = math.ceil(len(pos) / loop.batch_size)
        m = start_micro
        while True:
            epoch, off = divmod(m, per_epoch)
            order = epoch_order(len(pos), loop.seed, epoch)
            idx = order[off * loop.batch_size : (off + 1) * loop.batch_size]
            yield self.make_batch([pos[i] for i in idx], epoch)
            m += 1

    def reference(self):
        """The reference denoiser the method asked for (None when it needs none)."""
        if self.strategy == "none":
            return None
        if self.strategy == "frozen_copy":
            return FrozenDenoiser(self.ref_unet, _MP[self.cfg.train.mixed_precision])
        return AdapterOffDenoiser(self.acc.unwrap_model(self.unet))

    def train(self, until: int | None = None, on_step=None) -> dict:
        """Run the loop (resuming when ``train.resume`` is set); returns the last metrics.

        Args:
            until (int | None): stop after this global step (the schedule spans the whole run).
            on_step (callable | None): ``on_step(step, metrics)`` after every optimiser step
                (e.g. evaluate or snapshot the policy at chosen steps, as the toy study does).
        """
        loop, acc = self.cfg.train, self.acc
        out = Path(loop.output_dir)
        opt = make_optimizer(self.unet.parameters(), loop)
        total = self.total_steps()
        sched = make_scheduler(opt, loop, total)
        step = 0
        ckpt = find_checkpoint(out, loop.resume)
        if ckpt is not None:
            state = load_checkpoint(ckpt, self.unet, opt, sched)
            step = state["step"]
            self.method.state.load_state_dict(state["loss_state"])
            acc.print(f"[resume] {ckpt} (step {step})")
        self.unet, opt = acc.prepare(self.unet, opt)
        policy, reference = Denoiser(self.unet), self.reference()
        if loop.log_with:
            acc.init_trackers("diffalign", config={"trainer": "diffusion", "method": self.cfg.method})
        bar = tqdm(total=total, initial=step, desc=self.cfg.method, disable=not acc.is_local_main_process)
        batches = self.micro_batches(step * loop.grad_accum)
        last: dict = {}
        log_f = None
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            log_f = open(out / "metrics.jsonl", "a")
        self.step_times = [time.perf_counter()]  # wall clock at the start and after each step (bench)
        while step < min(total, until or total):
            agg: dict[str, float] = {}
            for _ in range(loop.grad_accum):
                with acc.accumulate(self.unet):
                    mo = self.method.compute_loss(next(batches), policy, reference)
                    acc.backward(mo.loss)
                    if acc.sync_gradients:
                        gn = acc.clip_grad_norm_(self.unet.parameters(), loop.max_grad_norm or float("inf"))
                        agg["grad_norm"] = float(gn)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in mo.metrics.items():
                    agg[k] = agg.get(k, 0.0) + float(v) / loop.grad_accum
            sched.step()
            step += 1
            self.step_times.append(time.perf_counter())
            agg["lr"] = sched.get_last_lr()[0]
            last = agg
            bar.update(1)
            bar.set_postfix_str(format_metrics(agg))
            if on_step is not None:
                on_step(step, agg)
            if step % loop.log_every == 0 or step == total:
                acc.log(agg, step=step)
                if log_f:
                    log_f.write(json.dumps({"step": step, **agg}) + "\n")
                    log_f.flush()
            if loop.save_every and step % loop.save_every == 0 and step < total and acc.is_main_process:
                model = acc.unwrap_model(self.unet)
                trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
                save_checkpoint(out, step, trainable, opt, sched, {"loss_state": self.method.state.state_dict()},
                                keep=loop.keep_checkpoints)
        bar.close()
        if log_f:
            log_f.close()
        acc.end_training()
        return last

    # ---- output -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """A LoRA folder (``load_lora_weights``) or, for full fine-tuning, a whole pipeline folder."""
        path = Path(path)
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return path
        unet = self.acc.unwrap_model(self.unet)
        if self.cfg.model.lora is not None:
            return save_lora(unet, self.comp.family, path)
        c = self.comp
        kw = {"unet": unet.float(), "vae": c.vae.float(), "tokenizer": c.tokenizers[0], "text_encoder": c.text_encoders[0]}
        if c.family == "sdxl":
            kw.update(tokenizer_2=c.tokenizers[1], text_encoder_2=c.text_encoders[1])
        pipe = pipeline_class(c.family).from_pretrained(c.path, **kw)
        pipe.save_pretrained(path, safe_serialization=True)
        return path


def run(cfg: DiffusionTrainConfig) -> dict:
    """Train, save (``<output_dir>/final``), then evaluate against the base when ``eval`` is set."""
    import yaml

    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    t0 = time.time()
    trainer = DiffusionTrainer(cfg)
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
        summary["eval"] = evaluate(cfg.model.path, str(final), read_prompts(e.prompts, e.splits, e.max_prompts), e.reward,
                                   e.out or out / "eval", e.seeds_per_prompt, e.seed, e.guidance_scale,
                                   e.num_inference_steps, e.batch_size, e.grid_columns, print_fn=acc.print)
        summary["eval_seconds"] = round(time.time() - t1, 1)
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
