"""Config schema of the online trainer (``trainer: online``): rounds of sample → score → build → update.

Torch-free at import. ``model``, ``loss``, ``train`` and ``eval`` are the offline trainer's
sections; ``method:`` is the method's own section (``dragon``, ``diffusion_dpo`` as online DPO, …).
Round arithmetic (printed at start): a round samples ``prompts_per_round × samples_per_prompt``
images, builds pairs from them, then takes ``inner_steps`` optimiser steps of
``train.batch_size × train.grad_accum`` pairs each (drawn from the round's pairs, reshuffled and
cycled); ``train.max_steps / inner_steps`` rounds in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..methods.base import MethodConfig
from .config_common import LoopConfig, LossConfig
from .offline_config import DiffusionModelConfig, EvalConfig, PairDataConfig

__all__ = ["RolloutConfig", "OnlineRewardConfig", "OnlineReferenceConfig", "OnlineTrainConfig", "SERVES"]

#: The method needs this trainer serves.
SERVES = frozenset({"reference", "rollouts", "reward", "inversion", "winners"})


@dataclass
class RolloutConfig:
    """What a round samples.

    Attributes:
        prompts: a prompt file (``data/prompts.py``: JSON list or ``{split: [...]}``, text, parquet);
            null for a method that samples the prompts of its ``data:`` winners (SePPO).
        split: the JSON key to sample from (e.g. ``train``); null for a plain list.
        prompts_per_round: distinct prompts per round (drawn without replacement, cycling the set).
        samples_per_prompt: K samples per prompt (a group).
        num_inference_steps / guidance_scale: the rollout sampler's (fewer steps than evaluation).
        chunk: samples per pipeline call.
        overlap_scoring: score a chunk in a worker thread while the next one samples (same results).
    """

    prompts: str | None = None
    split: str | None = None
    prompts_per_round: int = 16
    samples_per_prompt: int = 4
    num_inference_steps: int = 10
    guidance_scale: float = 3.0
    chunk: int = 64
    overlap_scoring: bool = True

    def validate(self) -> None:
        if self.prompts_per_round < 1 or self.samples_per_prompt < 1:
            raise ValueError("rollout: prompts_per_round and samples_per_prompt must be ≥ 1")


@dataclass
class OnlineRewardConfig:
    """The training reward: one plugin (``name``) or a weighted sum (``weights``).

    Attributes:
        name: a reward name (``diffalign list rewards``). weights: ``{name: weight}`` for a weighted sum.
        kwargs: factory arguments (``{name: {...}}`` for a weighted sum). Set-scope rewards are
            attributed to samples by leave-one-out over each round's samples.
    """

    name: str | None = None
    weights: dict[str, float] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if (self.name is None) == (self.weights is None):
            raise ValueError("reward: set exactly one of name and weights")


@dataclass
class OnlineReferenceConfig:
    """The reference of the loss (``models/reference.py``).

    Attributes:
        strategy: ``auto`` (``adapter_off`` with LoRA, else ``frozen_copy``), ``adapter_off``,
            ``frozen_copy``, ``periodic_copy``, ``ema`` or ``checkpoint_pool``.
        every: optimiser steps between copies (``periodic_copy``) or snapshots (``checkpoint_pool``).
        ema_decay: decay of ``ema``. pool_size: most snapshots of ``checkpoint_pool`` (initial included).
        offload: CPU-offload a ``frozen_copy``.
    """

    strategy: Literal["auto", "adapter_off", "frozen_copy", "periodic_copy", "ema", "checkpoint_pool"] = "auto"
    every: int = 50
    ema_decay: float = 0.99
    pool_size: int = 8
    offload: bool = False


@dataclass
class OnlineTrainConfig:
    """``trainer: online`` — preference optimisation of a diffusion model on its own samples.

    Attributes:
        reward: the training reward (required by methods that need one, e.g. DRAGON; optional
            otherwise, then it only logs the rollouts' scores).
        data: preference pairs whose preferred images are a method's dataset winners (SePPO);
            each round then samples the prompts of ``prompts_per_round`` of them.
        inner_steps: optimiser steps per round on the round's pairs.
        grid_every: write a grid of the round's samples every this many rounds (null: never).
        method: ``dragon`` (default) or another method whose needs this trainer serves.
    """

    trainer: Literal["online"]
    model: DiffusionModelConfig
    rollout: RolloutConfig
    reward: OnlineRewardConfig | None = None
    data: PairDataConfig | None = None
    loss: LossConfig = field(default_factory=lambda: LossConfig(beta=5000.0))
    reference: OnlineReferenceConfig = field(default_factory=OnlineReferenceConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    inner_steps: int = 4
    grid_every: int | None = None
    eval: EvalConfig | None = None
    method: MethodConfig = field(default_factory=lambda: MethodConfig(name="dragon"))

    def validate(self) -> None:
        from ..methods import method_class
        from ..methods.base import NEEDS

        if type(self.method) is MethodConfig:
            self.method = MethodConfig.resolve_class(self.method.name)(name=self.method.name)
        missing = method_class(self.method.name).class_needs() - SERVES
        if missing:
            raise ValueError(f"method {self.method.name!r} needs {', '.join(NEEDS[n] for n in sorted(missing))}; "
                             "trainer 'online' cannot serve it")
        needs = method_class(self.method.name).class_needs()
        if "reward" in needs and self.reward is None:
            raise ValueError(f"method {self.method.name!r} needs a training reward: set reward.name or reward.weights")
        if "reward" in needs and self.rollout.samples_per_prompt < 2:
            raise ValueError(f"rollout.samples_per_prompt must be ≥ 2 for {self.method.name!r}: pairs come from the "
                             "spread of a prompt's samples")
        if "winners" in needs and self.data is None:
            raise ValueError(f"method {self.method.name!r} trains on dataset winners: set data.source (preference pairs)")
        if self.data is not None and "winners" not in needs:
            raise ValueError(f"data: is read only by methods that need dataset winners; {self.method.name!r} does not")
        if self.data is None and self.rollout.prompts is None:
            raise ValueError("rollout.prompts is required (a prompt file) unless the method samples its data's prompts")
        if self.train.max_steps is None:
            raise ValueError("train.max_steps is required for trainer: online (rounds × inner_steps)")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be ≥ 1, got {self.inner_steps}")
        if self.train.save_every and self.train.save_every % self.inner_steps:
            raise ValueError(f"train.save_every ({self.train.save_every}) must be a multiple of inner_steps "
                             f"({self.inner_steps}): checkpoints fall between rounds, so a resume re-samples exactly")
        if self.reference.strategy == "adapter_off" and self.model.lora is None:
            raise ValueError("reference.strategy: adapter_off needs model.lora (there are no adapters to turn off)")
