"""Reference strategies: where the model the loss compares the policy against comes from.

* ``none``        — the loss kinds are reference-free (SimPO, CPO, SFT, …);
* ``adapter_off`` — the policy with its LoRA adapters disabled: the initial model, no copy
  (diffusers' Diffusion-DPO script, torchtune);
* ``frozen_copy`` — a frozen copy of the initial model, in the compute dtype, optionally
  CPU-offloaded (Salesforce Diffusion-DPO, full fine-tuning).

* ``periodic_copy`` — a frozen copy of the policy, refreshed every ``every`` steps (Flow-GRPO's
  online DPO script: ``ref_update_step``);
* ``ema`` — an exponential moving average of the policy's trainable weights (DiffusionNFT, DGPO);
* ``checkpoint_pool`` — snapshots of the policy's trainable weights every ``every`` steps (the
  initial one included, at most ``size``, the oldest later ones dropped first), one drawn
  uniformly for each round (SePPO's reference: a random previous checkpoint).

The text trainer adds ``precomputed`` (reference log-probs computed once before training) on
top of the same rules. Strategies that move during training implement ``update`` and
``state_dict`` / ``state_tensors`` so that the loop calls and checkpoints them without knowing
which one it holds (a resumed run ends with exactly the weights of an uninterrupted one).
"""

from __future__ import annotations

import copy

import torch

from .denoiser import AdapterOffDenoiser, Denoiser, FrozenDenoiser

__all__ = ["STRATEGIES", "ONLINE_STRATEGIES", "resolve_strategy", "frozen_copy", "trainable_state", "Reference",
           "NoReference", "AdapterOff", "FrozenCopy", "PeriodicCopy", "EMA", "CheckpointPool", "make_reference",
           "ReferenceOverlap"]


def resolve_strategy(requested: str, *, needs_reference: bool, has_lora: bool, auto: str, known: tuple[str, ...]) -> str:
    """The strategy a trainer uses: ``none`` when the method needs no reference, ``auto`` → the
    trainer's default, and a clear error for ``adapter_off`` without adapters.

    Args:
        requested (str): ``reference.strategy`` of the config. needs_reference (bool): what the
            method (or the loss kinds) declare. has_lora (bool): the policy carries LoRA adapters.
        auto (str): the trainer's default. known (tuple[str, ...]): strategies the trainer serves.
    """
    if not needs_reference:
        return "none"
    s = auto if requested == "auto" else requested
    if s not in known:
        raise ValueError(f"reference.strategy must be one of {['auto', *known]}, got {requested!r}")
    if s == "adapter_off" and not has_lora:
        raise ValueError("reference.strategy: adapter_off needs model.lora (there are no adapters to turn off)")
    return s


def frozen_copy(module: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False,
                device: torch.device | str | None = None) -> torch.nn.Module:
    """A frozen, eval-mode deep copy of ``module``.

    Args:
        dtype (torch.dtype | None): cast the copy (no gradients: the compute dtype is enough; the
            official Diffusion-DPO code keeps an fp16 ``ref_unet``). None keeps the dtype.
        offload (bool): keep it on the CPU and move layers to ``device`` as they run (accelerate
            ``cpu_offload``; slower, saves a model of device memory).
        device: where it runs.
    """
    ref = copy.deepcopy(module).requires_grad_(False).eval()
    if dtype is not None and dtype != torch.float32:
        ref.to(dtype)
    if offload:
        from accelerate import cpu_offload

        cpu_offload(ref, execution_device=device)
    elif device is not None:
        ref.to(device)
    return ref


class Reference:
    """A reference strategy for a denoising method.

    Attributes:
        name (str): the strategy's name (``reference.strategy``).
    """

    name = ""

    def denoiser(self) -> Denoiser | None:
        """The reference denoiser for the next loss (None: reference-free)."""
        raise NotImplementedError

    def update(self, step: int, policy: torch.nn.Module) -> None:
        """Called by the loop after each optimiser step (moving strategies update here)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a checkpoint must hold (written as safetensors). Default: none."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


class NoReference(Reference):
    name = "none"

    def denoiser(self):
        return None


class AdapterOff(Reference):
    """The policy U-Net with adapters off.

    Args:
        unet: the unwrapped policy U-Net with LoRA.
        view (bool): run a weight-sharing ``base_view`` (default) instead of toggling the adapters.
    """

    name = "adapter_off"

    def __init__(self, unet: torch.nn.Module, view: bool = True):
        self._denoiser = AdapterOffDenoiser(unet, view)

    def denoiser(self):
        return self._denoiser


class FrozenCopy(Reference):
    """A frozen copy of the initial U-Net (see ``frozen_copy`` for the arguments)."""

    name = "frozen_copy"

    def __init__(self, unet: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False, device=None):
        self.unet = frozen_copy(unet, dtype, offload, device)
        self._denoiser = FrozenDenoiser(self.unet, dtype)

    def denoiser(self):
        return self._denoiser


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights of a module (what moves during training), detached copies on the CPU."""
    return {n: p.detach().to("cpu", copy=True) for n, p in module.named_parameters() if p.requires_grad}


class _MovingCopy(Reference):
    """A frozen copy of the policy taken *with* its adapters, whose trainable weights follow a rule.

    Args:
        unet: the policy U-Net (adapters added). dtype, device: of the copy.
    """

    def __init__(self, unet: torch.nn.Module, dtype: torch.dtype | None = None, device=None):
        self.names = [n for n, p in unet.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError(f"reference.strategy {self.name}: the policy has no trainable weights to follow")
        self.unet = frozen_copy(unet, dtype, False, device)
        self._params = dict(self.unet.named_parameters())
        self._denoiser = FrozenDenoiser(self.unet, dtype)

    def denoiser(self):
        return self._denoiser

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor]) -> None:
        """Set the copy's trainable weights (names of the policy's trainable parameters)."""
        for n in self.names:
            self._params[n].copy_(weights[n])

    def current(self) -> dict[str, torch.Tensor]:
        return {n: self._params[n].detach().to("cpu", copy=True) for n in self.names}

    def state_tensors(self):
        return {f"current/{n}": v for n, v in self.current().items()}

    def load_state_tensors(self, tensors):
        self.load({n: tensors[f"current/{n}"] for n in self.names})


class PeriodicCopy(_MovingCopy):
    """The policy, copied every ``every`` optimiser steps. Args: every (int): steps between copies."""

    name = "periodic_copy"

    def __init__(self, unet, every: int, dtype=None, device=None):
        super().__init__(unet, dtype, device)
        self.every = every

    def update(self, step, policy):
        if step % self.every == 0:
            self.load(trainable_state(policy))


class EMA(_MovingCopy):
    """``ref ← decay·ref + (1 − decay)·policy`` after every step. Args: decay (float): e.g. 0.99."""

    name = "ema"

    def __init__(self, unet, decay: float, dtype=None, device=None):
        super().__init__(unet, dtype, device)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"reference.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay

    @torch.no_grad()
    def update(self, step, policy):
        current = dict(policy.named_parameters())
        for n in self.names:
            self._params[n].lerp_(current[n].detach().to(self._params[n]), 1.0 - self.decay)


class CheckpointPool(_MovingCopy):
    """Past snapshots of the policy's trainable weights (CPU), one drawn uniformly per ``draw``.

    Args:
        every (int): optimiser steps between snapshots. size (int): most snapshots kept (the initial
            one always; the oldest later ones are dropped first). seed (int): seeds the draws.
    """

    name = "checkpoint_pool"

    def __init__(self, unet, every: int, size: int, seed: int = 0, dtype=None, device=None):
        super().__init__(unet, dtype, device)
        if size < 1:
            raise ValueError(f"reference.pool_size must be ≥ 1, got {size}")
        self.every, self.size = every, size
        self.pool: list[tuple[int, dict[str, torch.Tensor]]] = [(0, self.current())]
        self.drawn = 0
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, step, policy):
        if step % self.every == 0:
            self.pool.append((step, trainable_state(policy)))
            if len(self.pool) > self.size:
                del self.pool[1]  # keep the initial snapshot; drop the oldest later one

    def draw(self) -> int:
        """Load a snapshot drawn uniformly from the pool into the copy; returns its step."""
        k = int(torch.randint(len(self.pool), (1,), generator=self.generator))
        self.drawn = self.pool[k][0]
        self.load(self.pool[k][1])
        return self.drawn

    def state_dict(self):
        return {"drawn": self.drawn}

    def load_state_dict(self, state):
        self.drawn = state["drawn"]

    def state_tensors(self):
        out = super().state_tensors()
        out["pool_steps"] = torch.tensor([s for s, _ in self.pool], dtype=torch.long)
        out["generator"] = self.generator.get_state()
        for k, (_, weights) in enumerate(self.pool):
            out.update({f"pool/{k}/{n}": v for n, v in weights.items()})
        return out

    def load_state_tensors(self, tensors):
        super().load_state_tensors(tensors)
        self.generator.set_state(tensors["generator"])
        self.pool = [(int(s), {n: tensors[f"pool/{k}/{n}"] for n in self.names})
                     for k, s in enumerate(tensors["pool_steps"].tolist())]


STRATEGIES = ("adapter_off", "frozen_copy")
ONLINE_STRATEGIES = ("adapter_off", "frozen_copy", "periodic_copy", "ema", "checkpoint_pool")


def make_reference(strategy: str, unet: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False,
                   device=None, every: int = 1, decay: float = 0.99, pool_size: int = 8, seed: int = 0,
                   base_view: bool = True) -> Reference:
    """Build a resolved strategy (``resolve_strategy``) around the policy U-Net.

    ``frozen_copy`` copies ``unet`` now, so call it before adapters are added; ``adapter_off``
    keeps a handle on ``unet`` and needs its adapters by the first call; the moving strategies
    (``periodic_copy``, ``ema``, ``checkpoint_pool``) copy the policy *with* its adapters, so call
    them after. ``base_view`` (``adapter_off``): a weight-sharing view of the base model rather
    than toggling the policy's adapters.
    """
    if strategy == "periodic_copy":
        return PeriodicCopy(unet, every, dtype, device)
    if strategy == "ema":
        return EMA(unet, decay, dtype, device)
    if strategy == "checkpoint_pool":
        return CheckpointPool(unet, every, pool_size, seed, dtype, device)
    if strategy == "none":
        return NoReference()
    if strategy == "adapter_off":
        return AdapterOff(unet, base_view)
    if strategy == "frozen_copy":
        return FrozenCopy(unet, dtype, offload, device)
    raise ValueError(f"unknown reference strategy {strategy!r} (known: none, {', '.join(STRATEGIES)})")


class ReferenceOverlap:
    """CPU only: the reference forward on a thread of its own while the policy's forward runs.

    A small U-Net uses two intra-op threads poorly (measured on the 24 M-param bench U-Net, 8 rows
    at 16×16 latents: 1.54× from one thread to two), so two one-thread forwards side by side beat
    two two-thread forwards in a row. During :meth:`run` the caller's thread keeps ``n − n//2``
    threads and the reference thread ``n//2``; afterwards the caller has all ``n`` again, so the
    policy's backward — the one piece of work with nothing to overlap — runs on every core.

    Same computation, other thread counts per operation: results agree with a sequential run up
    to float summation order (and bit for bit with a sequential one-thread run).

    Args:
        threads (int): torch's intra-op threads to share out (≥ 2).
    """

    def __init__(self, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        if threads < 2:
            raise ValueError(f"reference.overlap needs at least 2 CPU threads, torch has {threads} (train.num_threads)")
        self.threads, self.mine = threads, threads - threads // 2
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="reference", initializer=torch.set_num_threads,
                                       initargs=(threads // 2,))

    def run(self, policy_fn, reference_fn):
        """``(policy_fn(), reference_fn())``, the second on the reference thread (grad mode is per
        thread: ``reference_fn`` sets its own)."""
        pending = self.pool.submit(reference_fn)
        torch.set_num_threads(self.mine)
        try:
            out = policy_fn()
            return out, pending.result()
        finally:
            torch.set_num_threads(self.threads)

    def __repr__(self) -> str:
        return f"ReferenceOverlap({self.mine} + {self.threads // 2} threads)"
