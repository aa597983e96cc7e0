"""The reward plugin protocol: a spec, tensors in, tensors out.

A reward is a ``torch.nn.Module`` subclass of :class:`Reward` that declares a class attribute
``spec`` (:class:`RewardSpec`) and implements ``score(samples) -> RewardResult``. The base class's
``forward`` does the shared work every plugin needs, so that a plugin's ``score`` only sees a clean
batch:

1. validation: modality shape (image ``[B, 3, H, W]``, audio ``[B, C, T]`` with a sample rate) and
   prompts when ``needs_prompt``;
2. resampling audio to ``spec.sample_rate`` (torch-native, differentiable);
3. moving the data to the module's device and parameter dtype;
4. NaN passthrough: a sample whose data are not finite (or whose prompt is ``None``) is "not
   applicable" and scores NaN; the others are scored without it (instance scopes). A set-scope
   reward returns NaN when any member is not applicable;
5. chunking by ``max_batch_size`` (instance scopes only; a set reward always sees the whole set);
6. ``torch.no_grad()`` unless ``spec.differentiable``;
7. outputs as float32 on the input's device, ``details["raw"]`` always present.

The protocol follows the recommendations in ``reference/rewards.md`` §6 and DRAGON's three reward
scopes (arXiv:2504.15217): ``instance`` ``r(x, c)``, ``instance_to_set`` ``r(x; D_ref)`` and ``set``
``R(D_gen; D_ref)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

__all__ = ["MODALITIES", "SCOPES", "Reward", "RewardResult", "RewardSpec", "Samples", "resample"]

MODALITIES = ("image", "audio")
SCOPES = ("instance", "instance_to_set", "set")


@dataclass(frozen=True)
class RewardSpec:
    """What a reward is and what it needs; read by the registry, trainers and docs.

    Attributes:
        name (str): Registry key, e.g. ``"pickscore"``.
        modality (str): ``"image"`` (``[B, 3, H, W]`` in [0, 1]) or ``"audio"`` (``[B, C, T]`` in [-1, 1]).
        scope (str): ``"instance"`` (``r(x, c)``), ``"instance_to_set"`` (``r(x; D_ref)``, one value per
            sample) or ``"set"`` (``R(D)``, one scalar per batch). Default is ``"instance"``.
        needs_prompt (bool): Requires ``len(samples.prompts) == B``. Default is True.
        differentiable (bool): Keeps autograd from ``samples.data`` to ``scores``. Default is False.
        higher_is_better (bool): False for distances (FAD); combinators negate. Default is True.
        sample_rate (int | None): Audio rate the reward wants; ``forward`` resamples. Default is None.
        max_batch_size (int | None): Largest chunk handed to ``score``; None = no chunking.
        weights (tuple[str, ...]): Artifact ids (``hf://repo/file``), for docs and pre-download.
    """

    name: str
    modality: str
    scope: str = "instance"
    needs_prompt: bool = True
    differentiable: bool = False
    higher_is_better: bool = True
    sample_rate: int | None = None
    max_batch_size: int | None = None
    weights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"RewardSpec {self.name!r}: modality {self.modality!r} not in {MODALITIES}")
        if self.scope not in SCOPES:
            raise ValueError(f"RewardSpec {self.name!r}: scope {self.scope!r} not in {SCOPES}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"RewardSpec {self.name!r}: max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.modality == "audio" and self.sample_rate is None:
            raise ValueError(f"RewardSpec {self.name!r}: audio rewards must declare sample_rate")


@dataclass
class Samples:
    """A batch to score.

    Attributes:
        data (torch.Tensor): Images ``[B, 3, H, W]`` float in [0, 1] (RGB, unnormalised) or audio
            ``[B, C, T]`` float in [-1, 1].
        prompts (Sequence[str | None] | None): One prompt per sample; ``None`` entries are "not applicable".
        sample_rate (int | None): Audio sample rate in Hz (required for audio).
        metadata (dict | None): Free-form extras passed through to ``score``.
    """

    data: torch.Tensor
    prompts: Sequence[str | None] | None = None
    sample_rate: int | None = None
    metadata: dict | None = None

    def __len__(self) -> int:
        return self.data.shape[0]

    def select(self, index: torch.Tensor | slice) -> Samples:
        """Returns the sub-batch at ``index`` (a slice or a 1-D long tensor)."""
        if isinstance(index, slice):
            prompts = None if self.prompts is None else list(self.prompts)[index]
        else:
            prompts = None if self.prompts is None else [self.prompts[i] for i in index.tolist()]
        return replace(self, data=self.data[index], prompts=prompts)


@dataclass
class RewardResult:
    """Scores and per-sample details.

    Attributes:
        scores (torch.Tensor): float32 ``[B]`` (NaN = not applicable), or a scalar ``[]`` for scope ``set``.
        details (dict[str, torch.Tensor]): ``"raw"`` = unscaled values (same shape as ``scores``), plus
            per-component entries (``[B]`` or scalars).
    """

    scores: torch.Tensor
    details: dict[str, torch.Tensor] = field(default_factory=dict)


class Reward(torch.nn.Module):
    """Base class of every reward plugin (see the module docstring for what ``forward`` does).

    Subclasses set the class attribute ``spec`` and implement :meth:`score`. An instance may narrow
    its spec (``self.spec = dataclasses.replace(type(self).spec, ...)``), e.g. to change modality.

    Attributes:
        max_batch_size (int | None): Chunk size used by ``forward``; starts at ``spec.max_batch_size``
            and may be changed per instance.
    """

    spec: ClassVar[RewardSpec]
    #: False for instance-scope rewards whose per-sample value depends on the whole batch
    #: (e.g. leave-one-out attributions): ``forward`` then never chunks.
    chunkable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.max_batch_size: int | None = self.spec.max_batch_size

    # ------------------------------------------------------------------ plugin API
    def score(self, samples: Samples) -> RewardResult:
        """Scores a clean batch: finite data on the module's device, prompts all present.

        Args:
            samples (Samples): Data already validated, resampled and moved by ``forward``.

        Returns:
            RewardResult: ``scores`` ``[B]`` (or ``[]`` for scope ``set``) and ``details``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ shared machinery
    @property
    def device(self) -> torch.device | None:
        """The device of the first parameter or buffer; None for a stateless reward."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return None

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype of the first floating-point parameter (inputs are cast to it); None without parameters."""
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        return None

    def forward(self, samples: Samples) -> RewardResult:  # noqa: D102 (documented in the class)
        self._validate(samples)
        out_device = samples.data.device
        samples = self._prepare(samples)
        batch = len(samples)
        valid = self._valid_mask(samples)  # [B] bool, on CPU
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.spec.differentiable):
            if self.spec.scope == "set":
                if not bool(valid.all()) or batch == 0:
                    nan = torch.tensor(math.nan)
                    return RewardResult(nan.to(out_device), {"raw": nan.to(out_device)})
                return _finalise(self.score(samples), (), out_device)
            return self._score_instances(samples, valid, out_device)

    def _validate(self, samples: Samples) -> None:
        spec, data = self.spec, samples.data
        if not torch.is_floating_point(data):
            raise TypeError(f"reward {spec.name!r}: data must be a float tensor, got {data.dtype}")
        if spec.modality == "image" and (data.ndim != 4 or data.shape[1] != 3):
            raise ValueError(f"reward {spec.name!r}: images must be [B, 3, H, W], got {list(data.shape)}")
        if spec.modality == "audio":
            if data.ndim != 3:
                raise ValueError(f"reward {spec.name!r}: audio must be [B, C, T], got {list(data.shape)}")
            if samples.sample_rate is None:
                raise ValueError(f"reward {spec.name!r}: audio samples need sample_rate")
        if spec.needs_prompt:
            if samples.prompts is None or len(samples.prompts) != data.shape[0]:
                n = None if samples.prompts is None else len(samples.prompts)
                raise ValueError(f"reward {spec.name!r} needs one prompt per sample: {data.shape[0]} samples, {n} prompts")

    def _prepare(self, samples: Samples) -> Samples:
        data = samples.data
        device, dtype = self.device, self.dtype
        if device is not None and device.type != "meta" and data.device != device:
            data = data.to(device)
        if dtype is not None and data.dtype != dtype:
            data = data.to(dtype)
        rate = samples.sample_rate
        if self.spec.modality == "audio" and rate != self.spec.sample_rate:
            data, rate = resample(data, rate, self.spec.sample_rate), self.spec.sample_rate
        return replace(samples, data=data, sample_rate=rate)

    def _valid_mask(self, samples: Samples) -> torch.Tensor:
        data = samples.data.detach()
        valid = torch.isfinite(data.reshape(data.shape[0], -1)).all(dim=1).cpu()
        if self.spec.needs_prompt:
            valid &= torch.tensor([p is not None for p in samples.prompts], dtype=torch.bool)
        return valid

    def _score_instances(self, samples: Samples, valid: torch.Tensor, out_device: torch.device) -> RewardResult:
        index = valid.nonzero().flatten()  # rows that are applicable
        step = self.max_batch_size if (self.chunkable and self.max_batch_size) else max(len(index), 1)
        chunks = [index[i : i + step] for i in range(0, len(index), step)]
        parts = [self.score(samples.select(c.to(samples.data.device))) for c in chunks]
        for part, c in zip(parts, chunks):
            if part.scores.shape != (len(c),):
                raise RuntimeError(
                    f"reward {self.spec.name!r}: score() returned {list(part.scores.shape)}, expected [{len(c)}]"
                )
        scores = _scatter([p.scores for p in parts], index, len(samples), out_device)
        details = {"raw": scores.detach()}
        for key in dict.fromkeys(k for p in parts for k in p.details):
            vals = [p.details.get(key) for p in parts]
            if all(v is not None and v.ndim >= 1 and v.shape[0] == len(c) for v, c in zip(vals, chunks)):
                details[key] = _scatter([v.detach() for v in vals], index, len(samples), out_device)
            elif len(parts) == 1 and vals[0] is not None:  # a per-batch detail, unchunked: pass through
                details[key] = vals[0].detach().float().to(out_device)
        return RewardResult(scores, details)


def _scatter(parts: list[torch.Tensor], index: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Puts chunk results back at ``index`` of a NaN-filled ``[B, ...]`` float32 tensor (differentiable)."""
    if not parts:
        return torch.full((batch,), math.nan, device=device)
    values = torch.cat([p.float().to(device) for p in parts])
    out = torch.full((batch, *values.shape[1:]), math.nan, device=device, dtype=torch.float32)
    return out.index_put((index.to(device),), values)


def _finalise(result: RewardResult, shape: tuple[int, ...], device: torch.device) -> RewardResult:
    if result.scores.shape != shape:
        raise RuntimeError(f"reward returned scores of shape {list(result.scores.shape)}, expected {list(shape)}")
    details = {k: v.float().to(device) for k, v in result.details.items()}
    scores = result.scores.float().to(device)
    details.setdefault("raw", scores.detach())
    return RewardResult(scores, details)


def resample(x: torch.Tensor, orig_rate: int, new_rate: int, lowpass_width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling along the last axis (windowed sinc, differentiable).

    The polyphase Hann-windowed sinc interpolator of torchaudio's ``functional.resample``
    (``sinc_interp_hann``) re-implemented so that torchaudio is not needed: the rates are reduced by
    their gcd to ``orig -> new``, each of the ``new`` output phases is a ``conv1d`` with its own
    kernel, and the cut-off is ``rolloff * min(orig, new) / 2``.

    Args:
        x (torch.Tensor): ``[..., T]`` signal.
        orig_rate (int): Input rate in Hz.
        new_rate (int): Output rate in Hz.
        lowpass_width (int): Zero crossings of the sinc on each side. Default is 6.
        rolloff (float): Cut-off as a fraction of the lower Nyquist rate. Default is 0.99.

    Returns:
        torch.Tensor: ``[..., ceil(T * new / orig)]``.
    """
    if orig_rate == new_rate:
        return x
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64, device=x.device)[None] / orig  # [1, K]
    t = torch.arange(0, -new, -1, dtype=torch.float64, device=x.device)[:, None] / new + idx  # [new, K]
    t = (t * base).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * base / orig
    kernel = kernel.to(x.dtype)[:, None]  # [new, 1, K]
    shape, length = x.shape, x.shape[-1]
    y = torch.nn.functional.pad(x.reshape(-1, 1, length), (width, width + orig))
    y = torch.nn.functional.conv1d(y, kernel, stride=orig)  # [N, new, frames]
    y = y.transpose(1, 2).reshape(y.shape[0], -1)
    out_len = math.ceil(new * length / orig)
    return y[..., :out_len].reshape(*shape[:-1], out_len)
