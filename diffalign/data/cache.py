"""Latent and text-embedding cache: encode a preference dataset once, train from safetensors shards.

Layout of ``<cache_dir>/<key>/`` (``key`` hashes the model's VAE and text encoders, the data and
the preprocessing: resolution, crop, flip)::

    meta.json                 settings, number of pairs, shard size
    shard-00000.safetensors   pairs [0, S): per-pair tensors + per-prompt tables (``u_*``)
    shard-00001.safetensors   …
    COMPLETE                  written after the last shard

Each shard is written to a temporary file and renamed into place, so an interrupted caching
pass leaves only whole shards; the next pass starts at the first missing one. Rows that fail to
decode during caching are skipped (``on_bad_row: skip``) and listed in the shard's metadata.

Per-pair tensors have ``K`` rows (the kept pairs of the shard) and include ``position`` (the
pair's index in the ``PairSet``). Tensors named ``u_*`` are per-unique-prompt tables that the
per-pair ``prompt_index`` points into (captions repeat a lot in Pick-a-Pic).

This module owns the tensor names of a preference-pair cache (``pair_shard`` writes them,
``LatentCache.pairs`` reads them)::

    position, prompt_index               [K] long
    chosen, rejected                     [K, C, h, w] VAE latents (× scaling factor)
    time_ids_chosen, time_ids_rejected   [K, 6] image facts: original size, crop corner, target size
    <name>_flip                          the same four for the mirrored images (when hflip)
    u_<field>                            [U, ...] text conditioning of each unique prompt, one table
                                         per field of the family's ``text_fields``
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..faults import fault_point

__all__ = ["fingerprint", "cache_key", "LatentCache", "pair_shard", "IMAGE_TENSORS", "FLIP", "TEXT_PREFIX"]

POSITION, PROMPT_INDEX = "position", "prompt_index"
IMAGE_TENSORS = ("chosen", "rejected", "time_ids_chosen", "time_ids_rejected")
FLIP = "_flip"
TEXT_PREFIX = "u_"

_HASH_LIMIT = 256 * 2**20  # files up to this size are hashed by content, larger ones by size + mtime


def fingerprint(path: str | Path, subdirs: tuple[str, ...] = ()) -> str:
    """sha256 over a file or folder (optionally only some sub-folders): names and contents."""
    path, h = Path(path), hashlib.sha256()
    roots = [path / s for s in subdirs] if subdirs else [path]
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}".encode())
            if st.st_size <= _HASH_LIMIT:
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            else:
                h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    """A short hash of a JSON-able mapping of everything the cached tensors depend on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


class LatentCache:
    """A folder of shards for one key.

    Args:
        folder (str | Path): ``<cache_dir>/<key>``.
        n_pairs (int): pairs in the dataset. shard_size (int): pairs per shard.
        settings (dict): what the key was made from (written to ``meta.json``).
    """

    def __init__(self, folder: str | Path, n_pairs: int, shard_size: int = 1024, settings: dict | None = None):
        self.folder, self.n_pairs, self.shard_size = Path(folder), n_pairs, shard_size
        self.settings = settings or {}
        self._handles: dict[int, object] = {}
        self._where: dict[int, tuple[int, int]] | None = None
        self._tables: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def n_shards(self) -> int:
        return -(-self.n_pairs // self.shard_size)

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.safetensors"

    @property
    def complete(self) -> bool:
        return (self.folder / "COMPLETE").is_file()

    def build(self, encode: Callable[[list[int]], tuple[dict[str, torch.Tensor], list[str]]], batch: int = 64,
              desc: str = "caching latents", disable: bool = False) -> None:
        """Encode every missing shard (resuming an interrupted pass) and mark the cache complete.

        Args:
            encode: ``positions -> (tensors, skipped)``; tensors hold per-pair rows (with
                ``position``) and ``u_*`` tables; ``skipped`` lists messages of rows dropped.
            batch (int): pairs per ``encode`` call.
        """
        from safetensors.torch import save_file

        if self.complete:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"n_pairs": self.n_pairs, "shard_size": self.shard_size, "settings": self.settings}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1))
        todo = [i for i in range(self.n_shards) if not self.shard_path(i).is_file()]
        bar = tqdm(total=self.n_pairs, initial=(self.n_shards - len(todo)) * self.shard_size, desc=desc,
                   disable=disable, unit="pair")
        for s in todo:
            lo, hi = s * self.shard_size, min(self.n_pairs, (s + 1) * self.shard_size)
            parts, skipped = [], []
            for a in range(lo, hi, batch):
                t, sk = encode(list(range(a, min(hi, a + batch))))
                fault_point("cache")
                parts.append(t)
                skipped += sk
                bar.update(min(hi, a + batch) - a)
            tensors = _merge(parts)
            tmp = self.folder / f".tmp-{self.shard_path(s).name}"
            save_file(tensors, tmp, metadata={"skipped": json.dumps(skipped)})
            os.replace(tmp, self.shard_path(s))
        bar.close()
        (self.folder / "COMPLETE").write_text("ok")

    # ---- reading --------------------------------------------------------------------------
    def _handle(self, s: int):
        from safetensors import safe_open

        if s not in self._handles:
            self._handles[s] = safe_open(str(self.shard_path(s)), framework="pt")
        return self._handles[s]

    def positions(self) -> list[int]:
        """Pair positions present in the cache (bad rows skipped while caching are absent)."""
        if self._where is None:
            self._where = {}
            for s in range(self.n_shards):
                for r, p in enumerate(self._handle(s).get_tensor(POSITION).tolist()):
                    self._where[p] = (s, r)
        return sorted(self._where)

    def skipped(self) -> list[str]:
        """Messages of rows skipped while caching."""
        return [m for s in range(self.n_shards) for m in json.loads(self._handle(s).metadata()["skipped"])]

    def get(self, positions: list[int], names: list[str]) -> dict[str, torch.Tensor]:
        """Rows of per-pair tensors ``names`` for ``positions``; ``u_*`` names are looked up
        through ``prompt_index``."""
        self.positions()
        out: dict[str, list] = {n: [] for n in names}
        for p in positions:
            s, r = self._where[p]
            h = self._handle(s)
            for n in names:
                if n.startswith(TEXT_PREFIX):
                    k = int(h.get_slice(PROMPT_INDEX)[r : r + 1][0])
                    out[n].append(h.get_slice(n)[k : k + 1])
                else:
                    out[n].append(h.get_slice(n)[r : r + 1])
        return {n: torch.cat(v) for n, v in out.items()}

    def pairs(self, positions: list[int], flips: list[bool] | None, text_fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The image tensors (``IMAGE_TENSORS``, the mirrored variant where ``flips`` says so) and
        the text fields of some pairs, under their plain names."""
        names = list(IMAGE_TENSORS) + ([n + FLIP for n in IMAGE_TENSORS] if flips is not None else [])
        t = self.get(positions, names)
        out = {}
        for n in IMAGE_TENSORS:
            if flips is None:
                out[n] = t[n]
            else:
                f = torch.tensor(flips).view(-1, *[1] * (t[n].ndim - 1))
                out[n] = torch.where(f, t[n + FLIP], t[n])
        text = self.get(positions, [TEXT_PREFIX + f for f in text_fields])
        out.update({f: text[TEXT_PREFIX + f] for f in text_fields})
        return out


def pair_shard(positions: list[int], variants: dict[str, tuple[torch.Tensor, ...]], captions: list[str],
               encode_text, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors of one ``encode`` call of a pair cache (see the module docstring).

    Args:
        positions (list[int]): the kept pairs. variants (dict): ``""`` (and ``FLIP``) → the four
            ``IMAGE_TENSORS`` of those pairs. captions (list[str]): their prompts.
        encode_text: ``prompts -> {field: [U, ...]}`` (the family's ``encode_prompts``).
        dtype (torch.dtype): dtype of the stored latents and text tables.
    """
    out = {POSITION: torch.tensor(positions, dtype=torch.long)}
    for suffix, tensors in variants.items():
        for name, v in zip(IMAGE_TENSORS, tensors):
            out[name + suffix] = v.to(dtype) if name in ("chosen", "rejected") else v
    uniq = sorted(set(captions))
    out[PROMPT_INDEX] = torch.tensor([uniq.index(c) for c in captions], dtype=torch.long)
    if uniq:
        out.update({TEXT_PREFIX + k: v.to("cpu", dtype) for k, v in encode_text(uniq).items()})
    return {k: v.cpu().contiguous() for k, v in out.items()}


def _merge(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate encode() outputs; re-index ``prompt_index`` into the concatenated ``u_*`` tables."""
    out: dict[str, list] = {}
    offset = 0
    for t in parts:
        for n, v in t.items():
            out.setdefault(n, []).append(v + offset if n == PROMPT_INDEX else v)
        offset += next((v.shape[0] for n, v in t.items() if n.startswith(TEXT_PREFIX)), 0)
    return {n: torch.cat(v).contiguous() for n, v in out.items()}
