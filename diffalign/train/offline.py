"""Offline preference training of a diffusion model on image pairs (``trainer: diffusion``).

The trainer puts the pieces together and hands them to the one loop (``loop.py``): the model
family loads the pipeline (``models/families``), the method computes the loss on the shared
core (``methods/``), the reference strategy gives the reference denoiser (``models/reference.py``),
``data/batches.py`` turns pairs into batches (latent cache, augmentation, caption dropout). It
branches only on what the method declares. Accelerate provides devices, mixed precision,
gradient accumulation and multi-GPU. Run with::

    diffalign train configs/toy/diffusion_dpo.yaml
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..config import to_dict
from ..data.batches import PairBatcher
from ..data.pairs import load_pairs
from ..methods import method_class
from ..models.denoiser import Denoiser
from ..models.families import load_components
from ..models.lora import add_lora
from ..models.reference import STRATEGIES, make_reference, resolve_strategy
from .common import make_accelerator
from .loop import Loop
from .offline_config import SERVES, DiffusionTrainConfig

__all__ = ["DiffusionTrainer", "save_model", "run"]

_MP = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        self.method = method_class(cfg.method.name).from_config(cfg.method, cfg.loss, self.comp)
        unserved = self.method.needs() - SERVES
        if unserved:
            raise ValueError(f"method {cfg.method.name!r} needs {sorted(unserved)}, which trainer 'diffusion' cannot serve")
        for enc in self.comp.text_encoders:
            enc.to(dev, dtype=wdtype)
        self.comp.vae.to(dev)
        for mod in self.method.modules().values():  # frozen modules of the method (e.g. NCP's encoder)
            mod.to(dev, dtype=wdtype)
        unet = self.comp.unet
        self.strategy = resolve_strategy(cfg.reference.strategy, needs_reference=self.method.needs_reference,
                                         has_lora=m.lora is not None, known=STRATEGIES,
                                         auto="adapter_off" if m.lora is not None else "frozen_copy")
        # a frozen copy is taken now, before adapters are added; adapter_off wraps the U-Net that gets them
        self.reference = make_reference(self.strategy, unet, wdtype, cfg.reference.offload, dev)
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
        self.pairs = load_pairs(d.source, d.split, (d.caption_column, d.image_0_column, d.image_1_column, d.label_column),
                                d.on_bad_row, d.ties, d.max_pairs, d.allow_eval_split)
        self.acc.print(f"[data] {self.pairs.source.name}: {len(self.pairs)} pairs"
                       f" ({self.pairs.ties} ties dropped, {self.pairs.skipped} bad rows skipped)")
        self.batcher = PairBatcher(self.pairs, self.comp, d, loop.seed, dev,
                                   {"vae": m.vae, "vae_dtype": m.vae_dtype})
        if d.cache:
            skipped = self.batcher.build_cache(self.acc)
            if skipped:
                self.acc.print(f"[data] caching skipped {len(skipped)} rows that did not decode, e.g. {skipped[0]}")
            for enc in self.comp.encoders():  # training reads latents: the encoders can leave the device
                enc.to("cpu")
        self.loop = Loop(self.acc, loop, self.unet, name=cfg.method.name,
                         states={"loss_state": self.method, "reference": self.reference})

    # ---- loop ---------------------------------------------------------------------------
    def _local(self) -> list[int]:
        return self.batcher.positions[self.acc.process_index :: self.acc.num_processes]

    def total_steps(self) -> int:
        loop = self.cfg.train
        if loop.max_steps is not None:
            return loop.max_steps
        return max(1, loop.epochs * math.ceil(len(self._local()) / loop.batch_size) // loop.grad_accum)

    def compute(self, model: torch.nn.Module, batch):
        """One micro-batch: the method's loss with the policy and the reference denoisers."""
        out = self.method.compute_loss(batch, Denoiser(model), self.reference.denoiser())
        return out.loss, out.metrics

    def train(self, until: int | None = None, on_step=None) -> dict:
        """Run the loop (resuming when ``train.resume`` is set); returns the last metrics.

        Args:
            until (int | None): stop after this global step (the schedule spans the whole run).
            on_step (callable | None): ``on_step(step, metrics)`` after every optimiser step
                (e.g. evaluate or snapshot the policy at chosen steps, as the toy studies do).
        """

        def after(step: int, metrics: dict) -> None:
            self.reference.update(step, self.acc.unwrap_model(self.loop.model))
            if on_step is not None:
                on_step(step, metrics)

        local, bs = self._local(), self.cfg.train.batch_size
        last = self.loop.run(self.total_steps(), lambda start: self.batcher.micro_batches(local, bs, start),
                             self.compute, until, after, {"trainer": "diffusion", "method": self.cfg.method.name})
        self.unet = self.loop.model
        return last

    @property
    def step_times(self) -> list[float]:
        return self.loop.step_times

    # ---- output -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """A LoRA folder (``load_lora_weights``) or, for full fine-tuning, a whole pipeline folder."""
        return save_model(self.acc, self.comp, self.unet, self.cfg.model.lora is not None, path)


def save_model(acc, comp, unet, lora: bool, path: str | Path) -> Path:
    """Save a trained U-Net as a LoRA folder (``load_lora_weights``) or a whole pipeline folder (main process)."""
    path = Path(path)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return path
    unet = acc.unwrap_model(unet)
    return comp.family.save_lora(unet, path) if lora else comp.family.save_pipeline(comp, unet, path)


def run(cfg: DiffusionTrainConfig) -> dict:
    """Train, save (``<output_dir>/final``), then evaluate against the base when ``eval`` is set."""
    import yaml

    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    t0 = time.time()
    trainer = DiffusionTrainer(cfg)
    labelled_by = trainer.pairs.labelled_by
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
                                   e.num_inference_steps, e.batch_size, e.grid_columns, print_fn=acc.print,
                                   judges=e.judges, labelled_by=labelled_by)
        summary["eval_seconds"] = round(time.time() - t1, 1)
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
