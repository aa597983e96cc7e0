"""THE training loop, shared by every trainer: accumulate, clip, step, log, checkpoint, resume.

A trainer hands the loop its trained module, a source of micro-batches and a ``compute``
function; the loop owns everything else::

    loop = Loop(acc, cfg.train, model, name="diffusion_dpo", states={"loss_state": method})
    last = loop.run(total_steps, batches=lambda start: my_batches(start),
                    compute=lambda model, batch: (loss, metrics))

* **Batches** — ``batches(start_micro)`` returns an iterator from micro-step ``start_micro`` on
  (a resumed run starts where the checkpoint left off). Offline trainers read a dataset; an
  online trainer samples, scores and builds its batches inside that iterator.
* **Steps** — ``grad_accum`` micro-steps per optimiser step under ``accelerator.accumulate``;
  gradients clipped to ``max_grad_norm`` when they sync; the schedule steps once per optimiser step.
* **Metrics** — averaged over micro-steps (names starting with ``num_`` are summed), plus
  ``grad_norm`` and ``lr``: on the progress bar every step, in ``metrics.jsonl`` and the trackers
  every ``log_every`` steps and at the last step.
* **Checkpoints** — every ``save_every`` steps (``checkpoint.save_checkpoint``: atomic, verified,
  safetensors + JSON): trainable weights, optimiser, schedule, RNG and the ``state_dict()`` (and
  ``state_tensors()``, if it has them) of every object in ``states`` (method state, reference
  strategy, …); ``resume: latest`` restores them all from the newest checkpoint that verifies, so
  a resumed run ends with exactly the weights of an uninterrupted one. ``metrics.jsonl`` is cut
  back to the resumed step, so it never holds a step twice.
* **Numerics** — a non-finite loss (any micro-step) or gradient norm stops the run before the
  optimiser steps (``on_nonfinite: stop``, one line naming the step and the quantity) or skips
  that update (``skip``: weights and optimiser untouched, counted in ``nonfinite_skipped``, the
  run stops after ``max_nonfinite_skips``). Checkpoints refuse non-finite weights. With fp16 the
  gradient scaler's own overflow skips are left to it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ..faults import fault_point
from .checkpoint import clean_leftovers, find_checkpoint, load_checkpoint, save_checkpoint
from .common import NonFiniteError, check_finite, format_metrics, make_optimizer, make_scheduler
from .config_common import LoopConfig

__all__ = ["Loop"]


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a torn last line of a killed run: dropped


def _read_once(pending: list[tuple[torch.Tensor, dict]], grad_norm, device) -> tuple[list[float], float, list[dict]]:
    """The micro-steps' losses, the gradient norm and every tensor metric read from the device in one
    transfer (one host–device sync per optimiser step, however many metrics the method logs).
    Returns ``(losses, grad_norm, [metrics as floats per micro-step])``."""
    vals = [loss.reshape(()) for loss, _ in pending]
    vals.append(grad_norm.reshape(()) if torch.is_tensor(grad_norm) else torch.tensor(float(grad_norm or 0.0)))
    keys = [[k for k, v in m.items() if torch.is_tensor(v)] for _, m in pending]
    vals += [m[k].detach().reshape(()) for (_, m), ks in zip(pending, keys) for k in ks]
    host = torch.stack([v.to(device=device, dtype=torch.float64) for v in vals]).tolist()
    n = len(pending)
    losses, gn, rest = host[:n], host[n], iter(host[n + 1 :])
    read = [{k: (next(rest) if torch.is_tensor(v) else float(v)) for k, v in m.items()} for _, m in pending]
    return losses, gn, read


class Loop:
    """The optimisation loop of one trained module.

    Args:
        acc: the ``accelerate.Accelerator`` (``common.make_accelerator``).
        cfg (LoopConfig): steps, optimiser, schedule, logging, checkpoints.
        model (torch.nn.Module): the trained module (its ``requires_grad`` parameters are optimised);
            after ``run`` starts, ``loop.model`` is the accelerate-prepared one.
        name (str): shown on the progress bar and given to the trackers.
        states (dict): name → object with ``state_dict()`` / ``load_state_dict(d)`` saved in checkpoints.
    """

    def __init__(self, acc, cfg: LoopConfig, model: torch.nn.Module, name: str, states: dict | None = None):
        self.acc, self.cfg, self.model, self.name = acc, cfg, model, name
        self.states = states or {}
        self.step = 0
        self.step_times: list[float] = []  # wall clock at the start and after each optimiser step (bench)

    def _resume(self, opt, sched) -> None:
        if self.acc.is_main_process and Path(self.cfg.output_dir).is_dir():
            clean_leftovers(self.cfg.output_dir)
        ckpt = find_checkpoint(self.cfg.output_dir, self.cfg.resume, warn=self.acc.print)
        if ckpt is None:
            return
        state = load_checkpoint(ckpt, self.model, opt, sched)
        self.step = state["step"]
        tensors = state.get("_tensors", {})
        for key, obj in self.states.items():
            if key in state:
                obj.load_state_dict(state[key])
            mine = {k[len(key) + 1 :]: v for k, v in tensors.items() if k.startswith(key + "/")}
            if mine and hasattr(obj, "load_state_tensors"):
                obj.load_state_tensors(mine)
        self.acc.print(f"[resume] {ckpt} (step {self.step})")

    def _save(self, opt, sched) -> None:
        model = self.acc.unwrap_model(self.model)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        tensors = {f"{k}/{n}": v for k, obj in self.states.items() if hasattr(obj, "state_tensors")
                   for n, v in obj.state_tensors().items()}
        save_checkpoint(self.cfg.output_dir, self.step, trainable, opt, sched,
                        {k: obj.state_dict() for k, obj in self.states.items()}, keep=self.cfg.keep_checkpoints,
                        tensors=tensors, check=lambda t: check_finite(t, f"checkpoint at step {self.step}"))

    def _trim_metrics(self, path: Path) -> None:
        """Drop ``metrics.jsonl`` lines past the resumed step (a killed run logged them already)."""
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        keep = [x for x in lines if x.strip() and _step_of(x) <= self.step]
        if len(keep) != len(lines):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(x + "\n" for x in keep))
            tmp.replace(path)

    def _add_metrics(self, agg: dict, per_micro: list[dict]) -> None:
        """Micro-step metrics into the step's: averaged over ``grad_accum`` (``num_*`` summed)."""
        for metrics in per_micro:
            for k, v in metrics.items():
                agg[k] = agg.get(k, 0.0) + v / (1 if k.startswith("num_") else self.cfg.grad_accum)

    def _nonfinite(self, step: int, what: str, value: float, skipped: int) -> int:
        """Stop, or count a skipped update; returns the new skip count."""
        cfg = self.cfg
        if cfg.on_nonfinite == "skip" and skipped < cfg.max_nonfinite_skips:
            self.acc.print(f"[numerics] step {step}: {what} is {value}; update skipped "
                           f"({skipped + 1} of at most {cfg.max_nonfinite_skips})")
            return skipped + 1
        why = (f"after {skipped} skipped updates (train.max_nonfinite_skips)" if cfg.on_nonfinite == "skip"
               else "(train.on_nonfinite: stop)")
        raise NonFiniteError(f"step {step}: {what} is {value}; stopped before the optimiser step {why} — the "
                             f"weights are those of step {step - 1}, nothing non-finite was saved; lower train.lr "
                             f"(now {cfg.lr:g}) or set train.on_nonfinite=skip")

    def run(
        self,
        total: int,
        batches: Callable[[int], Iterator],
        compute: Callable[[torch.nn.Module, object], tuple[torch.Tensor, dict]],
        until: int | None = None,
        on_step: Callable[[int, dict], None] | None = None,
        tracker_config: dict | None = None,
    ) -> dict:
        """Train to ``total`` optimiser steps (or stop after step ``until``); returns the last metrics.

        Args:
            total (int): optimiser steps of the whole run (the schedule spans them).
            batches: ``start_micro -> iterator`` of micro-batches.
            compute: ``(prepared model, micro-batch) -> (loss, metrics)``; metrics are scalars.
            until (int | None): stop after this global step (time-sliced runs, tests).
            on_step: ``on_step(step, metrics)`` after every optimiser step.
            tracker_config (dict | None): what the trackers record about the run.
        """
        cfg, acc = self.cfg, self.acc
        out = Path(cfg.output_dir)
        opt = make_optimizer(self.model.parameters(), cfg)
        sched = make_scheduler(opt, cfg, total)
        self._resume(opt, sched)
        self.model, opt = acc.prepare(self.model, opt)
        if cfg.log_with:
            acc.init_trackers("diffalign", config=tracker_config or {"name": self.name})
        self.model.train()
        bar = tqdm(total=total, initial=self.step, desc=self.name, disable=not acc.is_local_main_process)
        source = batches(self.step * cfg.grad_accum)
        last: dict = {}
        log_f = None
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            self._trim_metrics(out / "metrics.jsonl")
            log_f = open(out / "metrics.jsonl", "a")
        self.step_times = [time.perf_counter()]
        scaler_skips = acc.scaler is not None  # fp16: the gradient scaler skips overflowing steps itself
        skipped = 0
        try:
            while self.step < min(total, until or total):
                agg: dict[str, float] = {}
                bad: tuple[str, float] | None = None
                pending: list[tuple[torch.Tensor, dict]] = []  # (loss, metrics) per micro-step, still on the device
                for micro in range(cfg.grad_accum):
                    with acc.accumulate(self.model):
                        loss, metrics = compute(self.model, next(source))
                        acc.backward(loss)
                        pending.append((loss.detach(), metrics))
                        if acc.sync_gradients:
                            gn_t = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm or float("inf"))
                            losses, gn, read = _read_once(pending, gn_t, acc.device)  # the step's one host sync
                            pending = []
                            agg["grad_norm"] = gn
                            self._add_metrics(agg, read)
                            bad = next(((f"the loss (micro-step {i + 1} of {cfg.grad_accum})", v)
                                        for i, v in enumerate(losses) if not math.isfinite(v)), None)
                            if acc.num_processes > 1:  # every process must take the same decision
                                flags = acc.gather(torch.tensor([float(bad is not None)], device=acc.device))
                                if bad is None and bool(flags.sum() > 0):
                                    bad = ("the loss (on another process)", float("nan"))
                            if bad is None and not math.isfinite(gn) and not scaler_skips:
                                bad = ("the gradient norm", gn)
                            if bad is not None:
                                skipped = self._nonfinite(self.step + 1, bad[0], bad[1], skipped)
                                opt.zero_grad(set_to_none=True)  # this update is dropped: no optimiser step
                            else:
                                opt.step()
                                opt.zero_grad(set_to_none=True)
                if pending:  # accelerate did not sync on the last micro-step (should not happen): read them anyway
                    self._add_metrics(agg, _read_once(pending, None, acc.device)[2])
                if acc.num_processes > 1:  # the step's metrics over all processes: means (sums for ``num_*``)
                    keys = sorted(k for k in agg if k != "grad_norm")
                    vals = acc.reduce(torch.tensor([agg[k] for k in keys], dtype=torch.float64, device=acc.device), "sum")
                    agg.update({k: float(v) / (1 if k.startswith("num_") else acc.num_processes)
                                for k, v in zip(keys, vals.tolist())})
                sched.step()
                self.step += 1
                fault_point("step")  # the kill bench's "between the update and its metrics line"
                self.step_times.append(time.perf_counter())
                agg["lr"] = sched.get_last_lr()[0]
                if cfg.on_nonfinite == "skip":
                    agg["nonfinite_skipped"] = float(skipped)
                last = agg
                bar.update(1)
                bar.set_postfix_str(format_metrics(agg))
                if on_step is not None:
                    on_step(self.step, agg)
                if self.step % cfg.log_every == 0 or self.step == total:
                    acc.log(agg, step=self.step)
                    if log_f:
                        log_f.write(json.dumps({"step": self.step, **agg}) + "\n")
                        log_f.flush()
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < total and acc.is_main_process:
                    self._save(opt, sched)
        finally:
            bar.close()
            if log_f:
                log_f.close()
        for tracker in acc.trackers:  # not acc.end_training(): that also ends the process group, which the
            tracker.finish()          # final save (and the closing evaluation) still synchronise on
        return last
