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
from ..models.reference import STRATEGIES, ReferenceOverlap, make_reference, resolve_strategy
from .checkpoint import finished_run, save_final
from .common import check_finite, make_accelerator
from .loop import Loop
from .offline_config import SERVES, DiffusionTrainConfig

__all__ = ["DiffusionTrainer", "load_for_training", "make_trainable", "pair_batcher", "save_model", "start_run", "run"]

MIXED = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_for_training(cfg, acc, serves: frozenset, trainer: str):
    """Components and method of a diffusion trainer's config, checked against what the trainer
    ``serves``; text encoders, VAE and the method's frozen modules on the device."""
    loop, m = cfg.train, cfg.model
    dev, wdtype = acc.device, MIXED[loop.mixed_precision]
    torch.manual_seed(loop.seed)
    comp = load_components(m.path, m.family, m.vae, vae_dtype=m.vae_dtype, prediction_type=m.prediction_type,
                           trust_pickle=m.trust_pickle)
    method = method_class(cfg.method.name).from_config(cfg.method, cfg.loss, comp)
    unserved = method.needs() - serves
    if unserved:
        raise ValueError(f"method {cfg.method.name!r} needs {sorted(unserved)}, which trainer {trainer!r} cannot serve")
    for enc in comp.text_encoders:
        enc.to(dev, dtype=wdtype)
    comp.vae.to(dev)
    for mod in method.modules().values():  # frozen modules of the method (e.g. NCP's encoder)
        mod.to(dev, dtype=wdtype)
    return comp, method


def make_trainable(unet: torch.nn.Module, lora, loop, wdtype: torch.dtype, device, model=None) -> torch.nn.Module:
    """The policy U-Net: LoRA adapters (fp32, on base weights in the compute dtype) or full
    fine-tuning, gradient checkpointing when asked; on ``device`` in train mode; ``channels_last``
    and ``torch.compile`` when the ``model:`` section asks."""
    if lora is not None:
        if wdtype != torch.float32:
            unet.to(wdtype)  # frozen base weights in the compute dtype; adapters stay fp32 (diffusers recipe)
        add_lora(unet, lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.init)
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    else:
        unet.requires_grad_(True)
    if loop.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet = unet.to(device).train()
    if getattr(model, "channels_last", False):
        unet.to(memory_format=torch.channels_last)
    if getattr(model, "xformers", False):
        try:
            import xformers  # noqa: F401
        except ImportError:
            raise ImportError("model.xformers needs the xformers package (CUDA builds only): pip install xformers") from None
        unet.enable_xformers_memory_efficient_attention()
    if getattr(model, "compile", False):
        unet.compile()  # nn.Module.compile: in place, parameter names unchanged (checkpoints, LoRA files)
    return unet


def pair_batcher(cfg, comp, acc, note: str = "") -> PairBatcher:
    """The ``PairBatcher`` of the config's ``data:`` section (its latent cache built when ``data.cache``)."""
    d, m = cfg.data, cfg.model
    fam = comp.family
    audio = fam.modality == "audio"
    cols = (d.audio_0_column, d.audio_1_column) if audio else (d.image_0_column, d.image_1_column)
    pairs = load_pairs(d.source, d.split, (d.caption_column, *cols, d.label_column), d.on_bad_row, d.ties, d.max_pairs,
                       d.allow_eval_split, modality=fam.modality,
                       sample_rate=fam.sample_rate(comp) if audio else 16000, resample=d.resample)
    acc.print(f"[data] {pairs.source.name}: {len(pairs)} pairs{note}"
              f" ({pairs.ties} ties dropped, {pairs.skipped} bad rows skipped)")
    batcher = PairBatcher(pairs, comp, d, cfg.train.seed, acc.device, {"vae": m.vae, "vae_dtype": m.vae_dtype})
    if d.cache:
        skipped = batcher.build_cache(acc)
        if skipped:
            acc.print(f"[data] caching skipped {len(skipped)} rows that did not decode, e.g. {skipped[0]}")
    return batcher


class DiffusionTrainer:
    """Preference training of a text-to-image diffusion model.

    Args:
        cfg (DiffusionTrainConfig): the validated config.
    """

    def __init__(self, cfg: DiffusionTrainConfig):
        self.cfg = cfg
        loop, m, d = cfg.train, cfg.model, cfg.data
        self.acc = make_accelerator(loop)
        dev, wdtype = self.acc.device, MIXED[loop.mixed_precision]
        self.comp, self.method = load_for_training(cfg, self.acc, SERVES, "diffusion")
        unet = self.comp.unet
        self.strategy = resolve_strategy(cfg.reference.strategy, needs_reference=self.method.needs_reference,
                                         has_lora=m.lora is not None, known=STRATEGIES,
                                         auto="adapter_off" if m.lora is not None else "frozen_copy")
        # a frozen copy is taken now, before adapters are added; adapter_off wraps the U-Net that gets them
        self.reference = make_reference(self.strategy, unet, wdtype, cfg.reference.offload, dev,
                                        base_view=cfg.reference.base_view)
        self.unet = make_trainable(unet, m.lora, loop, wdtype, dev, m)
        self.batcher = pair_batcher(cfg, self.comp, self.acc)
        self.pairs = self.batcher.pairs
        if d.cache:
            for enc in self.comp.encoders():  # training reads latents: the encoders can leave the device
                enc.to("cpu")
        if cfg.reference.overlap:
            self._overlap_reference()
        self.loop = Loop(self.acc, loop, self.unet, name=cfg.method.name,
                         states={"loss_state": self.method, "reference": self.reference})

    def _overlap_reference(self) -> None:
        """``reference.overlap``: the reference forward on a second thread beside the policy's."""
        if self.acc.device.type != "cpu":
            raise ValueError("reference.overlap is for CPU training (on a GPU the kernels of one forward fill the device)")
        if not self.method.needs_reference or not hasattr(self.method, "reference_overlap"):
            return
        self.method.reference_overlap = ReferenceOverlap(torch.get_num_threads())
        self.acc.print(f"[reference] overlapped with the policy's forward: {self.method.reference_overlap}")

    # ---- loop ---------------------------------------------------------------------------
    def total_steps(self) -> int:
        loop = self.cfg.train
        if loop.max_steps is not None:
            return loop.max_steps
        per_epoch = math.ceil(len(self.batcher.positions) / (loop.batch_size * self.acc.num_processes))
        return max(1, loop.epochs * per_epoch // loop.grad_accum)

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

        pos, bs, acc = self.batcher.positions, self.cfg.train.batch_size, self.acc
        last = self.loop.run(self.total_steps(),
                             lambda start: self.batcher.micro_batches(pos, bs, start, acc.process_index, acc.num_processes),
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
    """Save a trained U-Net as a LoRA folder (``load_lora_weights``) or a whole pipeline folder (main process),
    atomically with a completion marker; non-finite weights are refused (``NonFiniteError``)."""
    path = Path(path)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return path
    unet = acc.unwrap_model(unet)
    trained = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    write = (lambda d: comp.family.save_lora(unet, d)) if lora else (lambda d: comp.family.save_pipeline(comp, unet, d))
    return save_final(path, write, trained, check_finite)


def reward_names(cfg) -> dict[str, str]:
    """``{config key: reward name}`` of every reward a config names (training reward, eval reward, judges)."""
    names = {}
    r = getattr(cfg, "reward", None)
    if r is not None:
        if getattr(r, "name", None):
            names["reward.name"] = r.name
        for k in getattr(r, "weights", None) or {}:
            names[f"reward.weights.{k}"] = k
    e = getattr(cfg, "eval", None)
    if e is not None and isinstance(getattr(e, "reward", None), str):
        names["eval.reward"] = e.reward
        for i, j in enumerate(getattr(e, "judges", None) or []):
            names[f"eval.judges[{i}]"] = j
    return names


def check_reward_names(cfg) -> None:
    """An unknown reward name is an error now, not after training (``diffalign list rewards``)."""
    from ..rewards.registry import available

    known = available()
    for key, name in reward_names(cfg).items():
        if name not in known:
            raise ValueError(f"{key}: unknown reward {name!r}; registered: {', '.join(sorted(known)) or 'none'}")


_LOCAL = (".parquet", ".jsonl", ".json", ".csv", ".txt")


def check_paths(cfg) -> None:
    """The model and the data and prompt files the config names must exist: one line naming the key
    (the weights first), before any model loads."""
    path = getattr(getattr(cfg, "model", None), "path", None)
    if isinstance(path, str) and cfg.trainer != "text":
        from ..models.loading import resolve_pretrained

        resolve_pretrained(path, "model.path")  # a local folder or the HF cache, else one line saying how to get it
    keys = {"data.source": ("data", "source"), "data.train": ("data", "train"), "data.eval": ("data", "eval"),
            "eval.prompts": ("eval", "prompts"), "rollout.prompts": ("rollout", "prompts")}
    for key, (sec, attr) in keys.items():
        value = getattr(getattr(cfg, sec, None), attr, None)
        if isinstance(value, str) and value.endswith(_LOCAL) and not Path(value).exists():
            raise FileNotFoundError(f"{key}: {value} does not exist")


def check_writable(out: Path, create: bool = False) -> None:
    """One line naming ``train.output_dir`` unless a file can be written there (or, when it does not
    exist and ``create`` is False, in its nearest existing parent)."""
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        where = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
        probe = where / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"train.output_dir {out} is not writable ({e.strerror or e})") from None


def start_run(cfg, out: Path) -> str | None:
    """Before anything heavy loads: check reward names, make ``out`` (one line if it is not writable),
    write the resolved config, and say whether the run is already finished (``checkpoint.finished_run``)."""
    check_reward_names(cfg)
    check_paths(cfg)
    import yaml

    check_writable(out, create=True)
    state = None if cfg.train.overwrite else finished_run(out)
    if state == "done":
        print(f"[done] {out} is a finished run ({out / 'final'} is complete); nothing to do "
              f"(train.overwrite=true trains it again)")
    elif state == "eval":
        print(f"[done] {out / 'final'} is complete; running only the closing evaluation, which did not finish")
    else:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return state


def _last_metrics(out: Path) -> dict:
    lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1]) if lines else {}


def run(cfg: DiffusionTrainConfig) -> dict:
    """Train, save (``<output_dir>/final``), then evaluate against the base when ``eval`` is set.

    A finished run (``final/`` complete, ``summary.json`` written) does nothing unless
    ``train.overwrite``; one whose closing evaluation was interrupted only evaluates."""
    out = Path(cfg.train.output_dir)
    state = start_run(cfg, out)
    if state == "done":
        return json.loads((out / "summary.json").read_text())
    t0 = time.time()
    if state == "eval":  # final/ is complete; only the closing evaluation was interrupted
        from ..data.pairs import open_source

        acc, final = make_accelerator(cfg.train), out / "final"
        labelled_by = open_source(cfg.data.source, cfg.data.split, cfg.data.allow_eval_split).labelled_by
        summary = {"train": _last_metrics(out), "output": str(final)}
    else:
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
                                   judges=e.judges, shared_noise=e.shared_noise, labelled_by=labelled_by)
        summary["eval_seconds"] = round(time.time() - t1, 1)
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
