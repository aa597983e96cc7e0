"""Text-LLM DPO trainer on the shared loss core (``trainer: text``).

One concatenated chosen+rejected forward per step (``losses/sequence.py``); the reference
is precomputed once and cached on disk (default), the policy with LoRA adapters off, or a
frozen copy. Any loss kind of the core. Metrics use TRL's names. Run with::

    diffalign train configs/text/toy_dpo.yaml
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..data.order import micro_batch_indices, process_share
from ..data.text import collate_pairs, file_fingerprint, read_rows, tokenize_pairs
from ..losses import LossState, PreferenceBatch, needs_of, preference_loss, resolve_kinds
from ..losses.sequence import sequence_logps
from ..models.denoiser import adapters_off
from ..faults import fault_point
from ..models.loading import resolve_pretrained, safe_from_pretrained
from ..models.reference import frozen_copy, resolve_strategy
from .checkpoint import save_final
from .common import check_finite, make_accelerator
from .loop import Loop
from .text_config import TextTrainConfig

__all__ = ["TextDPOTrainer", "run"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TextDPOTrainer:
    """DPO-family training of a causal LM.

    Args:
        cfg (TextTrainConfig): the validated config.
    """

    def __init__(self, cfg: TextTrainConfig):
        from transformers import AutoTokenizer

        self.cfg = cfg
        loop = cfg.train
        self.acc = make_accelerator(loop)
        torch.manual_seed(loop.seed)
        tok_dir = resolve_pretrained(cfg.model.tokenizer or cfg.model.path, "model.tokenizer")
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        if len(self.tokenizer) <= 5:
            raise ValueError(f"model.tokenizer: {tok_dir} gave an empty tokenizer ({len(self.tokenizer)} tokens)")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = self._build_model()
        self.kinds = resolve_kinds(cfg.loss.kinds)
        self.params = cfg.loss.params()
        self.loss_state = LossState()
        self.strategy = resolve_strategy(cfg.reference.strategy,
                                         needs_reference=not all(k.reference_free for k, _ in self.kinds),
                                         has_lora=cfg.model.lora is not None, auto="precomputed",
                                         known=("precomputed", "adapter_off", "frozen_copy"))
        self.ref_model = frozen_copy(self.model) if self.strategy == "frozen_copy" else None
        if cfg.model.lora is not None:
            self.model = self._add_lora(self.model)
        if loop.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.train_pairs = self._load_pairs(cfg.data.train)
        self.eval_pairs = self._load_pairs(cfg.data.eval) if cfg.data.eval else []
        self.ref_cache: dict[str, torch.Tensor] = {}
        if self.strategy == "precomputed":
            self.ref_cache = {
                "train": self._precompute(cfg.data.train, self.train_pairs),
                "eval": self._precompute(cfg.data.eval, self.eval_pairs) if self.eval_pairs else None,
            }

    # ---- set-up -------------------------------------------------------------------------
    def _build_model(self) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModelForCausalLM

        m = self.cfg.model
        dtype = _DTYPES[m.dtype]
        if m.build is not None:
            build = dict(m.build)
            conf = AutoConfig.for_model(build.pop("model_type"), **build)
            tok = self.tokenizer
            if "vocab_size" not in build:  # transformers' defaults (32k for llama) would dwarf a toy model
                conf.vocab_size = len(tok)
            elif conf.vocab_size < len(tok):
                raise ValueError(f"model.build.vocab_size {conf.vocab_size} < tokenizer size {len(tok)}")
            conf.pad_token_id, conf.eos_token_id, conf.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
            torch.manual_seed(self.cfg.train.seed)
            model = AutoModelForCausalLM.from_config(conf, dtype=dtype)
        else:
            path = resolve_pretrained(m.path, "model.path")
            model = safe_from_pretrained(AutoModelForCausalLM, path, "model.path", None, m.trust_pickle, dtype=dtype,
                                         trust_remote_code=m.trust_remote_code)
        model.config.use_cache = False
        self._init_weights = model.state_dict() if m.build is not None else {}
        return model

    def _add_lora(self, model):
        from peft import LoraConfig, get_peft_model

        lc = self.cfg.model.lora
        init = "gaussian" if lc.init == "gaussian" else True
        conf = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                          init_lora_weights=init, task_type="CAUSAL_LM")
        return get_peft_model(model, conf)

    def _load_pairs(self, path: str):
        d = self.cfg.data
        pairs, skipped = tokenize_pairs(
            read_rows(path), self.tokenizer, str(path), (d.prompt_column, d.chosen_column, d.rejected_column),
            d.max_length, d.max_prompt_length, d.on_bad_row,
        )
        if skipped:
            self.acc.print(f"[data] {path}: skipped {skipped} bad rows (data.on_bad_row: skip)")
        if not pairs:
            raise ValueError(f"{path}: no usable preference pairs")
        return pairs

    def _cache_key(self, data_path: str) -> str:
        m, d = self.cfg.model, self.cfg.data
        h = hashlib.sha256()
        if m.build is not None:  # a fresh model: hash its initial weights
            for name, t in sorted(self._init_weights.items()):
                h.update(name.encode() + t.detach().float().cpu().numpy().tobytes())
        else:
            root = Path(resolve_pretrained(m.path))
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    h.update(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
        h.update(f"{m.dtype}|{d.max_length}|{d.max_prompt_length}|{d.on_bad_row}|{len(self.tokenizer)}".encode())
        h.update(file_fingerprint(data_path).encode())
        return h.hexdigest()[:32]

    @torch.no_grad()
    def _precompute(self, data_path: str, pairs) -> torch.Tensor:
        """Reference log-probs ``[N, 2]`` (chosen, rejected) of the initial model, cached on disk."""
        from safetensors.torch import load_file, save_file

        path = Path(self.cfg.reference.cache_dir) / f"{self._cache_key(data_path)}.safetensors"
        if self.acc.num_processes > 1:
            self.acc.wait_for_everyone()  # every process sees the cache in the same state
        if path.exists():
            return load_file(path)["logps"]
        if self.acc.num_processes > 1 and not self.acc.is_main_process:  # the main process computes and writes them
            self.acc.wait_for_everyone()
            return load_file(path)["logps"]
        out = torch.zeros(len(pairs), 2)
        bs = self.cfg.train.batch_size * 2
        model = self.model.eval()
        for i in tqdm(range(0, len(pairs), bs), desc=f"reference log-probs {Path(data_path).name}",
                      disable=not self.acc.is_local_main_process):
            batch = collate_pairs(pairs[i : i + bs], self.tokenizer.pad_token_id)
            sc = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
            out[i : i + bs] = sc.logps.view(2, -1).T.float().cpu()
            fault_point("refcache")
        if self.acc.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"logps": out}, tmp)
            tmp.replace(path)
        if self.acc.num_processes > 1:
            self.acc.wait_for_everyone()
        return out

    # ---- scores and loss ----------------------------------------------------------------
    @torch.no_grad()
    def reference_logps(self, batch: dict, split: str = "train") -> torch.Tensor | None:
        """Reference scores ``[2B]`` (chosen rows first) by the configured strategy."""
        if self.strategy == "none":
            return None
        if self.strategy == "precomputed":
            ref = self.ref_cache[split][batch["index"].cpu()]  # [B, 2]
            return ref.T.reshape(-1).to(self.acc.device)
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        if self.strategy == "frozen_copy":
            return sequence_logps(self.ref_model, *args).logps
        with adapters_off(self.acc.unwrap_model(self.model)):
            return sequence_logps(self.model, *args).logps

    def compute_loss(self, batch: dict, split: str = "train", model: torch.nn.Module | None = None):
        """Policy forward (``model``: the loop's prepared model; default ``self.model``), reference
        scores and the core loss; returns ``(LossOutput, extra metrics)``."""
        model = model if model is not None else self.model
        sc = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        ref = self.reference_logps(batch, split)
        w, l = sc.split()
        needs = needs_of(self.cfg.loss.kinds)
        pb = PreferenceBatch(
            chosen=w.logps,
            rejected=l.logps,
            ref_chosen=None if ref is None else ref[: len(w.logps)],
            ref_rejected=None if ref is None else ref[len(w.logps) :],
            chosen_lengths=w.n_tokens.float() if "lengths" in needs else None,
            rejected_lengths=l.n_tokens.float() if "lengths" in needs else None,
            chosen_nll=(-w.logps / w.n_tokens.clamp(min=1)) if "nll" in needs else None,
        )
        out = preference_loss(pb, self.cfg.loss.kinds, self.params, self.loss_state)
        extra = {
            "logps/chosen": w.logps.detach().mean(),
            "logps/rejected": l.logps.detach().mean(),
            "logits/chosen": w.mean_logits.mean(),
            "logits/rejected": l.mean_logits.mean(),
        }
        return out, extra

    # ---- loop ---------------------------------------------------------------------------
    def total_steps(self) -> int:
        loop = self.cfg.train
        if loop.max_steps is not None:
            return loop.max_steps
        per_epoch = math.ceil(len(self.train_pairs) / (loop.batch_size * self.acc.num_processes))
        return max(1, loop.epochs * per_epoch // loop.grad_accum)

    def micro_batches(self, start_micro: int):
        """Yield collated micro-batches from micro-step ``start_micro`` on, epoch after epoch: each
        process takes its share of one global batch of ``batch_size · num_processes`` pairs."""
        pairs, bs, acc = self.train_pairs, self.cfg.train.batch_size, self.acc
        for _, idx in micro_batch_indices(len(pairs), bs * acc.num_processes, self.cfg.train.seed, start_micro):
            idx = process_share(idx, acc.process_index, acc.num_processes)
            batch = collate_pairs([pairs[i] for i in idx], self.tokenizer.pad_token_id)
            yield {k: v.to(self.acc.device) for k, v in batch.items()}

    def _compute(self, model: torch.nn.Module, batch: dict):
        lo, extra = self.compute_loss(batch, model=model)
        # non-pad tokens of this optimiser step (``num_*`` metrics are summed over micro-steps)
        return lo.loss, {"num_tokens": batch["attention_mask"].sum(), **lo.metrics, **extra}

    def train(self, until: int | None = None, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Run the loop (resuming when ``train.resume`` is set); returns the last metrics.

        Args:
            until (int | None): stop after this global step (time-sliced runs); the schedule
                still spans the whole run.
            on_step (Callable | None): called as ``on_step(step, metrics)`` after each
                optimiser step (benchmarks, custom logging).
        """
        loop = Loop(self.acc, self.cfg.train, self.model, name="text dpo", states={"loss_state": self.loss_state})
        last = loop.run(self.total_steps(), self.micro_batches, self._compute, until, on_step, {"trainer": "text"})
        self.model = loop.model
        return last

    # ---- evaluation and output ----------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "eval") -> dict:
        """Implicit-reward accuracy and margins on held-out pairs (ties count as wrong)."""
        pairs = self.eval_pairs if split == "eval" else self.train_pairs
        if not pairs:
            return {}
        self.model.eval()
        cr, rr = [], []
        bs = self.cfg.train.batch_size * 2
        for i in range(0, len(pairs), bs):
            batch = {k: v.to(self.acc.device) for k, v in collate_pairs(pairs[i : i + bs], self.tokenizer.pad_token_id).items()}
            lo, _ = self.compute_loss(batch, split)
            cr.append(lo.chosen_rewards.cpu())
            rr.append(lo.rejected_rewards.cpu())
        self.model.train()
        c, r = torch.cat(cr), torch.cat(rr)
        return {"n": len(c), "reward_accuracy": float((c > r).float().mean()), "reward_margin": float((c - r).mean())}

    def save(self, path: str | Path) -> Path:
        """Write the result with ``save_pretrained`` (a peft adapter folder with LoRA) + tokenizer."""
        path = Path(path)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.model)

            def write(folder: Path) -> None:
                model.save_pretrained(folder, safe_serialization=True)
                self.tokenizer.save_pretrained(folder)

            save_final(path, write, {n: p for n, p in model.named_parameters() if p.requires_grad}, check_finite)
        return path


def run(cfg: TextTrainConfig) -> dict:
    """Train, evaluate on the held-out pairs, save; print and return the summary."""
    from .offline import _last_metrics, start_run

    out = Path(cfg.train.output_dir)
    state = start_run(cfg, out)
    if state == "done":
        return json.loads((out / "summary.json").read_text())
    if state == "eval":  # killed between the final save and the summary: the held-out figures were lost
        summary = {"train": _last_metrics(out), "eval": "interrupted; rerun with train.overwrite=true to measure",
                   "output": str(out / "final")}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    trainer = TextDPOTrainer(cfg)
    before = trainer.evaluate() if trainer.eval_pairs else {}
    last = trainer.train()
    after = trainer.evaluate() if trainer.eval_pairs else {}
    final = trainer.save(out / "final")
    summary = {"train": last, "eval_before": before, "eval": after, "output": str(final)}
    if trainer.acc.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if after:
            trainer.acc.print(
                f"held-out reward accuracy: {after['reward_accuracy']:.3f} (n={after['n']}, "
                f"before training {before['reward_accuracy']:.3f}); mean reward margin {after['reward_margin']:.4f}"
            )
        trainer.acc.print(f"saved to {final}")
    return summary
