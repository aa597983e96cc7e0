"""Conformance checks every reward plugin must pass (used by diffalign's tests; usable by plugin authors).

Usage in a plugin's own tests::

    from diffalign.rewards.conformance import check_reward
    check_reward(build(weights=None))

Checks, each raising ``AssertionError`` with the reward's name:

1. shapes and dtypes: float32 ``[B]`` (``[]`` for scope ``set``) on the input's device, ``details["raw"]``
   of the same shape; finite on clean input;
2. permutation: instance scores permute with the batch; a set value is invariant;
3. chunking: instance scores do not depend on ``max_batch_size``;
4. NaN passthrough: a non-finite sample scores NaN and leaves the others unchanged (a set is NaN);
5. dtype and device moves: float64 input gives float32 output; ``.to(device)`` round trips (CUDA
   when available); outputs follow the input's device;
6. gradients reach ``samples.data`` exactly when ``spec.differentiable``.

"No network" is the caller's part: run the checks with sockets disabled (see the tests).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch

from diffalign.rewards.base import Reward, RewardResult, Samples

__all__ = ["check_reward", "make_samples"]

PROMPTS = ("a red circle on a blue background", "a dog barking twice", "rain on a tin roof", "x", "two green squares")


def make_samples(reward: Reward, batch: int = 4, seed: int = 0) -> Samples:
    """A seeded batch fit for ``reward``: images ``[B, 3, 40, 48]`` (non-square, to exercise resizing) or
    0.5 s of audio at 16 kHz (to exercise resampling), with prompts when the spec needs them."""
    gen = torch.Generator().manual_seed(seed)
    spec = reward.spec
    if spec.modality == "image":
        data, rate = torch.rand(batch, 3, 40, 48, generator=gen), None
    else:
        rate = 16000
        data = torch.rand(batch, 1, rate // 2, generator=gen) * 1.6 - 0.8
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)] if spec.needs_prompt else None
    return Samples(data, prompts=prompts, sample_rate=rate)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return torch.allclose(a.detach().cpu().float(), b.detach().cpu().float(), atol=atol, rtol=rtol, equal_nan=True)


def _check_result(name: str, res: RewardResult, shape: tuple[int, ...], device: torch.device) -> None:
    assert isinstance(res, RewardResult), f"{name}: forward must return RewardResult, got {type(res).__name__}"
    assert res.scores.shape == shape, f"{name}: scores shape {list(res.scores.shape)}, expected {list(shape)}"
    assert res.scores.dtype == torch.float32, f"{name}: scores dtype {res.scores.dtype}, expected float32"
    assert res.scores.device == device, f"{name}: scores on {res.scores.device}, input on {device}"
    assert "raw" in res.details, f"{name}: details lack 'raw'"
    assert res.details["raw"].shape == shape, f"{name}: details['raw'] shape {list(res.details['raw'].shape)}"


def check_reward(reward: Reward, samples: Samples | None = None, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Runs every conformance check on ``reward`` (restores its ``max_batch_size`` and device afterwards).

    Args:
        reward (Reward): A built reward (tiny random weights are fine).
        samples (Samples | None): Input batch (B >= 3); default :func:`make_samples`.
        atol (float): Absolute tolerance of the equivalence checks. Default is 1e-4.
        rtol (float): Relative tolerance. Default is 1e-4.
    """
    name, spec = reward.spec.name, reward.spec
    samples = samples or make_samples(reward)
    batch, device = len(samples), samples.data.device
    assert batch >= 3, f"{name}: conformance needs B >= 3"
    is_set = spec.scope == "set"
    shape = () if is_set else (batch,)

    # 1. shapes, dtypes, finiteness
    base = reward(samples)
    _check_result(name, base, shape, device)
    assert torch.isfinite(base.scores).all(), f"{name}: non-finite scores on clean input: {base.scores}"

    # 2. permutation
    perm = torch.arange(batch - 1, -1, -1)
    res = reward(samples.select(perm))
    want = base.scores if is_set else base.scores[perm]
    assert _close(res.scores, want, atol, rtol), f"{name}: not permutation-{'invariant' if is_set else 'equivariant'}"

    # 3. chunking
    if not is_set and reward.chunkable:
        saved = reward.max_batch_size
        try:
            reward.max_batch_size = 1
            chunked = reward(samples)
        finally:
            reward.max_batch_size = saved
        assert _close(chunked.scores, base.scores, atol, rtol), f"{name}: scores depend on chunking"

    # 4. NaN passthrough
    data = samples.data.clone()
    data[1] = math.nan
    res = reward(replace(samples, data=data))
    _check_result(name, res, shape, device)
    if is_set:
        assert torch.isnan(res.scores), f"{name}: a set with a NaN member must score NaN"
    else:
        keep = torch.tensor([i != 1 for i in range(batch)])
        assert torch.isnan(res.scores[1]), f"{name}: NaN sample did not score NaN"
        assert _close(res.scores[keep], base.scores[keep], atol, rtol), f"{name}: a NaN sample changed the others"

    # 5. dtype and device moves
    res = reward(replace(samples, data=samples.data.double()))
    _check_result(name, res, shape, device)
    assert _close(res.scores, base.scores, 10 * atol, 10 * rtol), f"{name}: float64 input changes scores"
    assert reward.to(device) is reward, f"{name}: .to() must return the module"
    if torch.cuda.is_available():
        moved = copy.deepcopy(reward).to("cuda")
        res = moved(samples)  # CPU input, CUDA module: outputs return to the input's device
        _check_result(name, res, shape, device)
        assert _close(res.scores, base.scores, 1e-3, 1e-3), f"{name}: CUDA scores differ from CPU"

    # 6. gradients exactly when differentiable
    x = samples.data.clone().requires_grad_(True)
    res = reward(replace(samples, data=x))
    if spec.differentiable:
        assert res.scores.requires_grad, f"{name}: differentiable reward returned scores without a graph"
        res.scores[torch.isfinite(res.scores)].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"{name}: missing or non-finite gradient"
        assert x.grad.abs().sum() > 0, f"{name}: zero gradient"
    else:
        assert not res.scores.requires_grad, f"{name}: non-differentiable reward returned a graph"
