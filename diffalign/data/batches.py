"""Pair batches for the offline trainers: images or audio clips → latents (cached or on the fly),
augmentation, caption dropout, and the family's conditioning.

``PairBatcher`` turns positions of a ``PairSet`` into ``PairBatch`` es. With ``data.cache`` it
first encodes every pair once (``data/cache.py``: VAE latents of both images, both flips when
``hflip``, and the text conditioning of each unique prompt); training then reads latents and
the encoders may leave the device. Augmentation draws come from ``transforms.augmentation``
(pair, epoch and seed only), so cached, uncached and resumed runs see the same batches. Audio
pairs (families with ``modality = "audio"``) are decoded and fitted to the clip length by
``data/audio.py`` and never flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..models.denoiser import Conditioning
from .audio import decode_cell, fit_length
from .cache import FLIP, LatentCache, cache_key, fingerprint, pair_shard
from .order import micro_batch_indices, process_share
from .transforms import augmentation, decode, prepare

__all__ = ["PairBatch", "PairBatcher"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CACHE_VERSION = 2


@dataclass
class PairBatch:
    """``B`` preference pairs in latent space.

    Attributes:
        chosen (torch.Tensor): ``[B, C, h, w]`` clean latents of the preferred images (scaled by the VAE factor).
        rejected (torch.Tensor): ``[B, C, h, w]`` latents of the other images.
        cond (Conditioning): conditioning of the ``2B`` rows ``[chosen; rejected]`` (the pair's
            prompt twice; per-image micro-conditioning where the family uses it).
        label (torch.Tensor | None): ``[B]`` probability that ``chosen`` is preferred: 1, or 0.5
            for a kept tie (the pair then counts half in each direction).
        index (torch.Tensor | None): ``[B]`` dataset positions of the pairs.
        noise_seeds (torch.Tensor | None): ``[B]`` int64 per-pair noise seeds (``data.per_pair_noise``);
            None: the method draws from the global RNG.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    cond: Conditioning
    label: torch.Tensor | None = None
    index: torch.Tensor | None = None
    noise_seeds: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.chosen.shape[0]

    def x0(self) -> torch.Tensor:
        """``[2B, C, h, w]``: chosen rows first, the order of ``cond``."""
        return torch.cat([self.chosen, self.rejected])

    def to(self, device) -> "PairBatch":
        return PairBatch(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(device) for f in fields(self)})


class PairBatcher:
    """Batches of a ``PairSet`` for one model.

    Args:
        pairs (PairSet): checked pairs. comp (Components): the loaded model (family, VAE, text encoders).
        data (PairDataConfig): resolution, crop, flips, caption dropout, cache settings.
        seed (int): seeds the epoch order and augmentation. device: where batches go.
        model_key (dict): what else the cached tensors depend on (VAE override, dtypes).
    """

    def __init__(self, pairs, comp, data, seed: int, device, model_key: dict | None = None):
        self.pairs, self.comp, self.data, self.seed, self.device = pairs, comp, data, seed, device
        self.family = comp.family
        self.model_key = model_key or {}
        self.empty = self.family.empty_conditioning(comp, device)  # caption dropout: the pipeline's unconditional input
        self.cache: LatentCache | None = None
        self.positions = list(range(len(pairs)))
        self.audio = self.family.modality == "audio"
        if self.audio and data.hflip:
            raise ValueError("data.hflip: audio clips are not flipped; set data.hflip: false (or leave it out)")
        self.hflip = (not self.audio) if data.hflip is None else bool(data.hflip)
        if self.audio:
            self.sample_rate = self.family.sample_rate(comp)
            secs = getattr(data, "audio_seconds", None)
            self.clip = round(secs * self.sample_rate) if secs else self.family.clip_samples(comp)

    # ---- the cache ----------------------------------------------------------------------------
    def cache_folder(self) -> tuple[Path, dict]:
        d, c = self.data, self.comp
        subs = tuple(s for s in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
                     if (Path(c.path) / s).exists())
        parts = {
            "version": _CACHE_VERSION, "family": self.family.name, "model": fingerprint(c.path, subs), **self.model_key,
            "text_dtype": str(c.text_encoders[0].dtype), "data": fingerprint(d.source), "split": d.split,
            "columns": list(self.pairs.columns), "ties": d.ties, "on_bad_row": d.on_bad_row, "max_pairs": d.max_pairs,
            "n": len(self.pairs), "resolution": d.resolution, "crop": d.crop, "hflip": self.hflip, "dtype": d.cache_dtype,
        }
        if self.audio:
            parts.update({"clip": self.clip, "resample": d.resample, "mel": str(c.extras.get("mel"))})
        return Path(d.cache_dir) / cache_key(parts), parts

    def build_cache(self, acc) -> list[str]:
        """Encode every pair once (main process; the others wait), then read from the cache.
        Returns the messages of rows skipped because they did not decode."""
        folder, parts = self.cache_folder()
        cache = LatentCache(folder, len(self.pairs), settings=parts)
        if acc.is_main_process:
            cache.build(self._encode_for_cache, batch=32, disable=not acc.is_local_main_process)
        acc.wait_for_everyone()
        self.cache, self.positions = cache, cache.positions()
        return cache.skipped()

    def _encode_for_cache(self, positions: list[int]) -> tuple[dict, list[str]]:
        kept, skipped = [], []
        for p in positions:
            try:
                for k, blob in enumerate(self.pairs.images(p)):
                    self._prepare(p, k, blob, False, (0.5, 0.5))
                kept.append(p)
            except ValueError as e:  # any decode failure makes the row bad
                if self.data.on_bad_row != "skip":
                    raise
                skipped.append(str(e))
        b, variants = len(kept), {}
        for suffix, flip in [("", False)] + ([(FLIP, True)] if self.hflip else []):
            lat, tids = self.encode(kept, [flip] * b, [(0.5, 0.5)] * b) if b else (torch.zeros(0), torch.zeros(0, 6))
            variants[suffix] = (lat[:b], lat[b:], tids[:b], tids[b:])
        caps = [self.pairs.caption(p) for p in kept]
        return pair_shard(kept, variants, caps, lambda u: self.family.encode_prompts(self.comp, u),
                          _DTYPES[self.data.cache_dtype]), skipped

    # ---- batches ------------------------------------------------------------------------------
    def _prepare(self, p: int, k: int, blob, flip: bool, offset) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``k`` (0 chosen, 1 rejected) of pair ``p`` → (model input, time ids ``[6]``):
        pixels ``[3, R, R]`` in [−1, 1], or a waveform ``[clip]``; errors name dataset, row and column."""
        where = self.pairs.where(p, k)
        if self.audio:
            wave = decode_cell(blob, where, self.sample_rate, self.data.resample)
            return fit_length(wave, self.clip), torch.zeros(6)
        try:
            im = decode(blob)
        except Exception as e:  # noqa: BLE001 — PIL raises many types for corrupt data
            raise ValueError(f"{where}: image does not decode ({e})") from None
        x = prepare(im, self.data.resolution, self.data.crop, flip, offset)
        return x.pixels, x.time_ids()

    def encode(self, positions: list[int], flips: list[bool], offsets) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode, preprocess and VAE-encode both samples of each pair: latents ``[2B, C, h, w]`` and
        image facts (time ids) ``[2B, 6]``, chosen rows first."""
        prepared = [[], []]
        for p, flip, off in zip(positions, flips, offsets):
            for k, blob in enumerate(self.pairs.images(p)):
                prepared[k].append(self._prepare(p, k, blob, flip, off))
        allp = prepared[0] + prepared[1]
        x = torch.stack([v for v, _ in allp])
        n = getattr(self.data, "encode_batch_size", 8)  # the encoder's full-resolution activations set the peak
        lat = torch.cat([self.family.encode_samples(self.comp, x[i : i + n]) for i in range(0, len(allp), n)])
        return lat, torch.stack([t for _, t in allp])

    def make_batch(self, positions: list[int], epoch: int) -> PairBatch:
        """The ``PairBatch`` of some pairs in one epoch."""
        d, dev, fam = self.data, self.device, self.family
        aug = [augmentation(self.seed, epoch, p, self.hflip, d.caption_dropout) for p in positions]
        b = len(positions)
        label = torch.tensor([self.pairs.pairs[p].label for p in positions])
        if self.cache is not None:
            t = self.cache.pairs(positions, [a.flip for a in aug] if self.hflip else None, fam.text_fields)
            chosen, rejected = t["chosen"].float(), t["rejected"].float()
            tids = torch.cat([t["time_ids_chosen"], t["time_ids_rejected"]])
            text = {f: t[f].to(dev, torch.float32) for f in fam.text_fields}
        else:
            lat, tids = self.encode(positions, [a.flip for a in aug], [a.crop_offset for a in aug])
            chosen, rejected = lat[:b], lat[b:]
            text = fam.encode_prompts(self.comp, [self.pairs.caption(p) for p in positions], dev)
        drop = torch.tensor([a.drop_caption for a in aug], device=dev)
        for f, v in text.items():  # caption dropout: the unconditional input instead of the prompt's
            text[f] = torch.where(drop.view(-1, *[1] * (v.ndim - 1)), self.empty[f].to(v), v)
        cond = fam.conditioning({f: v.repeat(2, *[1] * (v.ndim - 1)) for f, v in text.items()}, tids.to(dev))
        seeds = None
        if getattr(d, "per_pair_noise", False):  # (seed, epoch, pair) → one int64 seed per pair
            seeds = torch.tensor([int(np.random.default_rng([self.seed, epoch, p, 1]).integers(0, 2**62)) for p in positions])
        return PairBatch(chosen, rejected, cond, label, torch.tensor(positions), seeds).to(dev)

    def micro_batches(self, positions: list[int], batch_size: int, start_micro: int = 0, rank: int = 0,
                      world: int = 1):
        """``PairBatch`` es over ``positions`` from micro-step ``start_micro`` on, epoch after epoch.

        With ``world`` processes, every micro-step draws one global batch of ``batch_size · world``
        pairs (the order a single process with that batch size would use) and process ``rank`` takes
        its contiguous share: the pairs of a step do not depend on the number of processes.
        """
        for epoch, idx in micro_batch_indices(len(positions), batch_size * world, self.seed, start_micro):
            idx = process_share(idx, rank, world)
            yield self.make_batch([positions[i] for i in idx], epoch)
