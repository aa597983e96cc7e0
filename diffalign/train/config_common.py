"""Config sections shared by every trainer (torch-free dataclasses).

Each field is documented once, here, with its unit and default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from ..losses.params import LossParams

__all__ = ["LossConfig", "LoraConfig", "LoopConfig"]


@dataclass
class LossConfig(LossParams):
    """Which loss kind(s) of the shared core, and their hyper-parameters (``LossParams``).

    Attributes:
        kinds: a kind name (``sigmoid``), a list of names (weights 1) or a mapping
            ``{name: weight}`` (RPO: ``{sigmoid: 1.0, nll: 0.005}``). ``diffalign list losses``
            prints them all.
    """

    kinds: Union[str, list[str], dict[str, float]] = "sigmoid"

    def params(self) -> LossParams:
        return LossParams(**{k: getattr(self, k) for k in LossParams.__dataclass_fields__})

    def validate(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


@dataclass
class LoraConfig:
    """LoRA adapters through peft. With LoRA the reference is the model with adapters off.

    Attributes:
        r: rank. alpha: scaling numerator (``lora_alpha``). dropout: adapter dropout.
        target_modules: module names to adapt. init: peft ``init_lora_weights``
            (``gaussian`` as the diffusers DPO script, or ``true`` for peft's default).
    """

    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    init: Literal["gaussian", "true"] = "true"


@dataclass
class LoopConfig:
    """Optimisation loop, checkpoints and logging.

    Attributes:
        output_dir: where checkpoints, logs and the final model go.
        seed: seeds model init (when built from a config), data order and noise.
        batch_size: pairs per device per micro-step.
        grad_accum: micro-steps per optimiser step (effective batch = batch_size × grad_accum × devices).
        max_steps: optimiser steps; when null, ``epochs`` full passes.
        epochs: passes over the training data when ``max_steps`` is null.
        lr: peak learning rate. weight_decay: AdamW decoupled weight decay.
        adam_betas: AdamW (β1, β2). adam_eps: AdamW ε.
        use_8bit_adam: bitsandbytes AdamW8bit (CUDA only; needs the bitsandbytes package).
        lr_schedule: ``constant`` | ``linear`` | ``cosine`` (after warm-up).
        warmup_steps: linear warm-up steps.
        max_grad_norm: gradient clipping (0 disables).
        mixed_precision: accelerate mixed precision (``no`` on CPU).
        gradient_checkpointing: trade compute for activation memory.
        log_every: optimiser steps between logged metrics.
        log_with: accelerate trackers, e.g. ``[tensorboard]`` (written under output_dir/logs).
        save_every: optimiser steps between checkpoints (null: only the final output).
        keep_checkpoints: how many checkpoints to keep.
        resume: null, ``latest``, or a checkpoint directory.
        num_threads: torch CPU threads (null: torch's default). Never more than free cores.
        on_nonfinite: ``stop`` (default): a NaN/inf loss or gradient norm stops the run before the
            optimiser step, with one line naming the step; ``skip``: that update is dropped and
            counted (``nonfinite_skipped``), up to ``max_nonfinite_skips``, then the run stops.
        max_nonfinite_skips: most updates ``skip`` may drop in one run.
        overwrite: train again although ``output_dir/final`` is complete (a finished run);
            otherwise a finished run says so and does nothing (or only its closing evaluation,
            when that was interrupted).
    """

    output_dir: str = "outputs/run"
    seed: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    use_8bit_adam: bool = False
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    log_every: int = 10
    log_with: list[str] = field(default_factory=list)
    save_every: int | None = None
    keep_checkpoints: int = 2
    resume: str | None = None
    num_threads: int | None = None
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_nonfinite_skips: int = 10
    overwrite: bool = False

    def validate(self) -> None:
        import math

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}")
        need(self.grad_accum >= 1, f"grad_accum must be ≥ 1, got {self.grad_accum}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr}")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps must be ≥ 1 or null, got {self.max_steps}")
        need(self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}")
        need(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
             f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        need(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}")
        need(self.warmup_steps >= 0, f"warmup_steps must be ≥ 0, got {self.warmup_steps}")
        need(math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0,
             f"max_grad_norm must be ≥ 0 (0 disables clipping), got {self.max_grad_norm}")
        need(self.log_every >= 1, f"log_every must be ≥ 1, got {self.log_every}")
        need(self.save_every is None or self.save_every >= 1, f"save_every must be ≥ 1 or null, got {self.save_every}")
        need(self.keep_checkpoints >= 1, f"keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}")
        need(self.max_nonfinite_skips >= 0, f"max_nonfinite_skips must be ≥ 0, got {self.max_nonfinite_skips}")
        need(self.num_threads is None or self.num_threads >= 1, f"num_threads must be ≥ 1, got {self.num_threads}")
