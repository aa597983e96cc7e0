"""Config schema of the text-LLM DPO trainer (``trainer: text``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config_common import LoopConfig, LoraConfig, LossConfig

__all__ = ["TextModelConfig", "TextDataConfig", "TextReferenceConfig", "TextTrainConfig"]


@dataclass
class TextModelConfig:
    """The causal LM.

    Attributes:
        path: local directory of a transformers causal LM (or a hub id present in the HF
            cache). Exactly one of ``path`` and ``build`` is set.
        build: a transformers config mapping for a fresh, randomly initialised model, e.g.
            ``{model_type: llama, hidden_size: 64, num_hidden_layers: 2, ...}``.
        tokenizer: tokenizer directory (default: ``path``).
        dtype: weights dtype. lora: LoRA adapters (null: full fine-tuning).
        trust_remote_code: allow model code from the checkpoint (off by default).
        trust_pickle: also read pickled ``.bin`` weights (off: safetensors only).
    """

    path: str | None = None
    build: dict[str, Any] | None = None
    tokenizer: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraConfig | None = None
    trust_remote_code: bool = False
    trust_pickle: bool = False

    def validate(self) -> None:
        if (self.path is None) == (self.build is None):
            raise ValueError("set exactly one of model.path and model.build")
        if self.build is not None and self.tokenizer is None:
            raise ValueError("model.build needs model.tokenizer (a local tokenizer directory)")


@dataclass
class TextDataConfig:
    """Preference pairs: JSONL or parquet files, or a local HF ``datasets`` directory.

    Attributes:
        train: training data path. eval: held-out data path (reward accuracy is reported on it).
        prompt_column / chosen_column / rejected_column: column names.
        max_length: longest prompt+completion in tokens; longer rows are truncated
            (completion kept from its start, prompt kept from its end).
        max_prompt_length: cap on the prompt part (null: no separate cap).
        on_bad_row: ``error`` stops with the file, row and column; ``skip`` drops and counts.
    """

    train: str
    eval: str | None = None
    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    max_length: int = 512
    max_prompt_length: int | None = None
    on_bad_row: Literal["error", "skip"] = "error"


@dataclass
class TextReferenceConfig:
    """Where reference log-probs come from.

    Attributes:
        strategy: ``precomputed`` (one pass before training with the initial model, cached
            on disk, keyed by model and data; no reference forward during training),
            ``adapter_off`` (LoRA only: the policy with adapters disabled), ``frozen_copy``
            (a second, frozen model), or ``auto`` (= ``precomputed``).
        cache_dir: where precomputed reference log-probs are cached.
    """

    strategy: Literal["auto", "precomputed", "adapter_off", "frozen_copy"] = "auto"
    cache_dir: str = ".cache/diffalign/ref_logps"


@dataclass
class TextTrainConfig:
    """``trainer: text`` — DPO-family training of a causal LM on preference pairs."""

    trainer: Literal["text"]
    model: TextModelConfig
    data: TextDataConfig
    loss: LossConfig = field(default_factory=LossConfig)
    reference: TextReferenceConfig = field(default_factory=TextReferenceConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
