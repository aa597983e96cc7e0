"""Config schema of the offline (preference-pair) diffusion trainer (``trainer: diffusion``).

Torch-free at import. Every field is documented once, here; ``loss``, ``model.lora`` and
``train`` reuse the shared sections of ``config_common.py``; the ``method:`` section is the
method's own config class (``diffalign/methods/``; validating it imports the method). In this
trainer ``loss.beta`` is the **paper-form** Diffusion-DPO β (inside of the log-sigmoid
``−(β/2)·(Δθ − Δref)``; paper and Salesforce code: 5000; diffusers SD1.5 script
``--beta_dpo 2500`` = paper-form 5000).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..methods.base import MethodConfig
from .config_common import LoopConfig, LoraConfig, LossConfig

__all__ = ["DiffusionModelConfig", "PairDataConfig", "DiffusionReferenceConfig", "EvalConfig", "DiffusionTrainConfig",
           "SERVES"]

#: The method needs (``methods.base.NEEDS``) this trainer serves: it trains on dataset pairs.
SERVES = frozenset({"reference", "inversion"})

_UNET_ATTN = ["to_k", "to_q", "to_v", "to_out.0"]


@dataclass
class DiffusionModelConfig:
    """The pipeline to align.

    Attributes:
        path: a diffusers pipeline folder (SD 1.5/2.x or SDXL), or a hub id in the HF cache.
        family: ``auto`` (from the folder) or a name of ``models.families.FAMILIES`` (``sd``, ``sdxl``).
        vae: another VAE (folder or cached hub id), e.g. ``madebyollin/sdxl-vae-fp16-fix``.
        vae_dtype: VAE dtype; fp32 by default (the SDXL VAE overflows in fp16).
        prediction_type: ``auto`` (the scheduler's), ``epsilon``, ``v_prediction`` or ``sample``.
        lora: LoRA adapters on the U-Net (null: full fine-tuning). Output: a LoRA file for
            ``load_lora_weights``; full fine-tuning writes a whole pipeline folder.
        trust_pickle: also read pickled ``.bin`` weights (a pickle can run code when read); off:
            safetensors only, and a folder with only pickles is one error naming its files.
        compile: ``torch.compile`` the trained U-Net (in place, state-dict names unchanged); the
            first steps then include the compilation (minutes on a CPU). Measured on the 2-core
            CPU: no faster (README "Performance"); on GPUs it usually is.
        channels_last: the U-Net's convolutions in ``channels_last`` memory format (GPUs' tensor
            cores prefer it; no change on the 2-core CPU).
        xformers: xformers' memory-efficient attention instead of torch's SDPA (CUDA; needs the
            xformers package).
    """

    path: str
    family: str = "auto"
    vae: str | None = None
    vae_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    prediction_type: Literal["auto", "epsilon", "v_prediction", "sample"] = "auto"
    lora: LoraConfig | None = None
    trust_pickle: bool = False
    compile: bool = False
    channels_last: bool = False
    xformers: bool = False

    def validate(self) -> None:
        from ..models.families import FAMILIES

        if self.family != "auto" and self.family not in FAMILIES:
            raise ValueError(f"model.family must be auto or one of {sorted(FAMILIES)}, got {self.family!r}")
        if self.lora is not None and self.lora.target_modules == LoraConfig().target_modules:
            self.lora.target_modules = list(_UNET_ATTN)  # LLM names make no sense on a U-Net


@dataclass
class PairDataConfig:
    """Preference pairs with Pick-a-Pic columns (``data/pairs.py``).

    Attributes:
        source: a ``.parquet`` file, a folder of parquet shards, a ``datasets.save_to_disk``
            folder, or a folder of images with ``index.jsonl``.
        split: the split to train on; required when the source has several (never guessed).
        allow_eval_split: permit training on a split named like validation/test.
        caption_column / image_0_column / image_1_column / label_column: column names.
        audio_0_column / audio_1_column: the sample columns of audio pairs (``audioldm`` family).
        label_column: null for chosen/rejected datasets (sample 0 always preferred; e.g.
            Audio-Alpaca with ``audio_0_column: chosen``, ``audio_1_column: rejected``).
        resolution: side of the square training images in pixels.
        crop: ``center`` or ``random`` (random needs ``cache: false``).
        hflip: random horizontal flip (the same for both images of a pair); null: on for images,
            off for audio (audio is never flipped).
        audio_seconds: clip length audio pairs are cut or zero-padded to (null: the pipeline's
            default length, ``unet.sample_size`` latent frames).
        resample: resample audio at another sample rate (polyphase) instead of refusing the row.
        per_pair_noise: draw each pair's ``t`` and ``ε`` from a generator seeded by (seed, epoch,
            pair) instead of the global RNG stream, so that a run gives the same weights on any
            number of processes at the same global batch (``accelerate launch``; README: Scale-out).
        caption_dropout: share of pairs trained with the empty prompt (official recipe 0.2 via
            ``--proportion_empty_prompts``; diffusers scripts 0).
        ties: ``drop`` pairs labelled 0.5 (official; ~12% of Pick-a-Pic) or ``half``: keep them
            with weight 0.5 in each direction.
        on_bad_row: ``error`` stops naming dataset, row and column; ``skip`` drops and counts.
        max_pairs: use at most this many pairs (the first ones).
        cache: encode latents and text embeddings once (``data/cache.py``) and train from them.
        cache_dir: where caches live (one sub-folder per model × data × preprocessing).
        cache_dtype: dtype of cached tensors (``float16`` halves the disk).
        encode_batch_size: images per VAE encoder call (caching and uncached steps): the
            encoder's activations at full resolution set the peak memory (diffusers' script: 8).
    """

    source: str
    split: str | None = None
    allow_eval_split: bool = False
    caption_column: str = "caption"
    image_0_column: str = "jpg_0"
    image_1_column: str = "jpg_1"
    audio_0_column: str = "audio_0"
    audio_1_column: str = "audio_1"
    label_column: str | None = "label_0"
    resolution: int = 512
    crop: Literal["center", "random"] = "center"
    hflip: bool | None = None
    audio_seconds: float | None = None
    resample: bool = False
    per_pair_noise: bool = False
    caption_dropout: float = 0.0
    ties: Literal["drop", "half"] = "drop"
    on_bad_row: Literal["error", "skip"] = "error"
    max_pairs: int | None = None
    cache: bool = True
    cache_dir: str = ".cache/diffalign/latents"
    cache_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    encode_batch_size: int = 8

    def validate(self) -> None:
        if self.encode_batch_size < 1:
            raise ValueError(f"data.encode_batch_size must be ≥ 1, got {self.encode_batch_size}")
        if self.cache and self.crop == "random":
            raise ValueError("data.crop: random needs data.cache: false (a cache stores one crop per image)")
        if self.audio_seconds is not None and self.audio_seconds <= 0:
            raise ValueError(f"data.audio_seconds must be > 0, got {self.audio_seconds}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"data.caption_dropout must be in [0, 1), got {self.caption_dropout}")


@dataclass
class DiffusionReferenceConfig:
    """The reference model of the loss.

    Attributes:
        strategy: ``auto`` (``adapter_off`` with LoRA, else ``frozen_copy``), ``adapter_off``
            (the policy with LoRA disabled: no second U-Net) or ``frozen_copy``.
        offload: keep the frozen copy on the CPU, moving layers to the device as they run
            (accelerate ``cpu_offload``; slower, saves a U-Net of device memory).
        overlap: CPU training only — run the reference forward on a second thread while the
            policy's forward runs, the CPU threads split between the two, all of them back for
            the backward (a small U-Net does not use two intra-op threads well: 1.54× from 1 to
            2 threads on the 24 M bench U-Net, 8 rows); never beside a reference that toggles the
            policy's own adapters.
            Same computation, other thread counts per operation (README "Performance").
        base_view: ``adapter_off`` runs a weight-sharing copy of the U-Net without its LoRA
            wrappers (default; the same numbers as disabled adapters, measured faster); false
            toggles the adapters off and on around the reference forward, as diffusers' script does.
    """

    strategy: Literal["auto", "adapter_off", "frozen_copy"] = "auto"
    offload: bool = False
    overlap: bool = False
    base_view: bool = True


@dataclass
class EvalConfig:
    """Evaluation against the base model after training (``diffalign/eval``).

    Attributes:
        prompts: a JSON file (a list, or ``{split: [prompts]}``) or a text file (one per line).
        splits: keys of a JSON mapping to evaluate, the first is the headline (null: the list).
        seeds_per_prompt: images per prompt (each row its own seed, the same for base and tuned).
        shared_noise: slot k of every prompt uses seed ``seed + k`` (the scheme before 2026-12-08: rows are then
            correlated across prompts and the row-bootstrap CIs too narrow); default: every row its own seed.
        seed: first seed. max_prompts: cap per split (one prompt from each of as many equal strata, not the first ones; null: all).
        reward: the headline reward (``diffalign list rewards``), e.g. ``toy_fidelity`` — usually the one
            that labelled the training pairs or drives training.
        judges: more scorers reported beside it: independent judges that neither labelled the data
            nor serve as the training reward (e.g. ``[toy_judge]``); a warning is printed when the
            only scorer is the one that labelled the training data.
        guidance_scale / num_inference_steps: sampling (the pipeline's own scheduler).
        batch_size: images per pipeline call. grid_columns: columns of the grid PNG.
        out: report folder (default ``<output_dir>/eval``).
    """

    prompts: str
    reward: str
    judges: list[str] = field(default_factory=list)
    splits: list[str] | None = None
    seeds_per_prompt: int = 1
    seed: int = 0
    max_prompts: int | None = None
    shared_noise: bool = False
    guidance_scale: float = 7.5
    num_inference_steps: int = 25
    batch_size: int = 32
    grid_columns: int = 16
    out: str | None = None


@dataclass
class DiffusionTrainConfig:
    """``trainer: diffusion`` — preference optimisation of a diffusion model on image pairs.

    Attributes:
        method: the method and its own fields, e.g. ``{name: diffusion_dpo, t_min: 300}``
            (``diffusion_dpo`` alone for its defaults). The methods of this trainer must not need
            rollouts or a reward (those are online methods).
    """

    trainer: Literal["diffusion"]
    model: DiffusionModelConfig
    data: PairDataConfig
    loss: LossConfig = field(default_factory=lambda: LossConfig(beta=5000.0))
    reference: DiffusionReferenceConfig = field(default_factory=DiffusionReferenceConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig | None = None
    method: MethodConfig = field(default_factory=MethodConfig)  # last: validating it imports the method (torch)

    def validate(self) -> None:
        from ..methods import method_class

        if type(self.method) is MethodConfig:  # the section was left out: the method's own defaults
            self.method = MethodConfig.resolve_class(self.method.name)(name=self.method.name)
        missing = method_class(self.method.name).class_needs() - SERVES
        if missing:
            from ..methods.base import NEEDS

            raise ValueError(f"method {self.method.name!r} needs {', '.join(NEEDS[n] for n in sorted(missing))}; "
                             f"trainer 'diffusion' trains on dataset pairs and cannot serve it")
        if self.reference.strategy == "adapter_off" and self.model.lora is None:
            raise ValueError("reference.strategy: adapter_off needs model.lora (there are no adapters to turn off)")
        if self.loss.beta < 1:
            raise ValueError(f"loss.beta is the paper-form Diffusion-DPO β (thousands; 5000 in arXiv 2311.12908), "
                             f"got {self.loss.beta} — set loss.beta")
