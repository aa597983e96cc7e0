"""Instance-to-set reward: a sample's similarity to an exemplar set (DRAGON's exemplar rewards).

DRAGON (Bai et al., arXiv 2504.15217) optimises rewards ``r(x; D_ref)`` that compare each sample
with a reference set — per-song FAD, or the CLAP similarity to an exemplar set, whose exemplars may
even be *text*. ``exemplar_similarity`` is the embedding-centroid form of that reward::

    r(x, c) = cos( E(x), μ(c) ),      μ(c) = normalise( mean_{e ∈ D_ref(c)} normalise(E(e)) )
    distance(x, c) = 1 − r(x, c)       (in ``details``: "the exemplar distance")

with ``E`` any embedder that has ``embed(samples) -> [B, D]`` (a built ``clip_score``, ``clap``,
``toy_clip`` reward). The exemplar set is

* **per prompt** (``per_prompt: true``): the exemplars whose caption is the sample's prompt; a
  prompt with no exemplars scores NaN (not applicable), or
* **one set** (``per_prompt: false``): every exemplar, the same centroid for every sample.

Exemplars are images (a parquet with a caption and an image-bytes column, read once and embedded
with ``E``) or texts (``texts: [...]``, embedded with ``E.embed_text``: a CLIP/CLAP text
centroid). The centroids are computed once at build time; scoring is a matrix product.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples

__all__ = ["ExemplarSimilarity", "build"]

SPEC = RewardSpec("exemplar_similarity", "image", scope="instance_to_set", needs_prompt=False, differentiable=True)


class ExemplarSimilarity(Reward):
    """Cosine similarity of each sample's embedding to its exemplar set's centroid; ``[B]``.

    Args:
        embedder (torch.nn.Module): ``embed(samples) -> [B, D]`` (its spec, if a Reward, sets modality).
        centroids (dict[str, torch.Tensor] | torch.Tensor): per-prompt ``{caption: [D]}`` or one ``[D]``.
    """

    spec = SPEC

    def __init__(self, embedder: torch.nn.Module, centroids: dict[str, torch.Tensor] | torch.Tensor) -> None:
        per_prompt = isinstance(centroids, dict)
        es = getattr(embedder, "spec", None)
        self.spec = RewardSpec(SPEC.name, es.modality if es else "image", scope="instance_to_set",
                               needs_prompt=per_prompt, differentiable=bool(es and es.differentiable),
                               sample_rate=es.sample_rate if es else None, max_batch_size=es.max_batch_size if es else None)
        super().__init__()
        self.embedder = embedder
        if per_prompt:
            if not centroids:
                raise ValueError("exemplar_similarity: the exemplar set is empty")
            self.captions = list(centroids)
            self.index = {c: i for i, c in enumerate(self.captions)}
            self.register_buffer("centroids", F.normalize(torch.stack([centroids[c] for c in self.captions]).float(), dim=-1))
        else:
            self.captions, self.index = None, None
            self.register_buffer("centroids", F.normalize(centroids.float().view(1, -1), dim=-1))

    def score(self, samples: Samples) -> RewardResult:
        emb = F.normalize(self.embedder.embed(samples).float(), dim=-1)  # [B, D]
        if self.index is None:
            rows = torch.zeros(emb.shape[0], dtype=torch.long)
        else:
            rows = torch.tensor([self.index.get(p, -1) for p in samples.prompts], dtype=torch.long)
        known = rows >= 0
        cos = (emb * self.centroids.to(emb)[rows.clamp_min(0)]).sum(-1)  # [B]
        cos = torch.where(known.to(cos.device), cos, torch.full_like(cos, math.nan))
        return RewardResult(cos, {"raw": cos.detach(), "distance": 1 - cos.detach()})


@torch.no_grad()
def _image_centroids(embedder, path: Path, caption_column: str, image_column: str, per_prompt: bool, batch: int = 64):
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(path, columns=[caption_column, image_column]).to_pydict()
    caps, blobs = table[caption_column], table[image_column]
    if not caps:
        raise ValueError(f"exemplar_similarity: {path} holds no exemplars")
    device = next((t.device for t in embedder.parameters()), torch.device("cpu"))
    embs = []
    for i in range(0, len(blobs), batch):
        ims = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0 for b in blobs[i : i + batch]]
        x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).to(device)
        embs.append(F.normalize(embedder.embed(Samples(x, caps[i : i + batch])).float(), dim=-1).cpu())
    e = torch.cat(embs)
    if not per_prompt:
        return e.mean(0)
    out: dict[str, list[torch.Tensor]] = {}
    for c, v in zip(caps, e):
        out.setdefault(c, []).append(v)
    return {c: torch.stack(v).mean(0) for c, v in out.items()}


def build(weights: Any = None, embedder: str | torch.nn.Module = "clip_score", exemplars: str | None = None,
          texts: Sequence[str] | None = None, per_prompt: bool = True, caption_column: str = "caption",
          image_column: str = "image", **kwargs: Any) -> ExemplarSimilarity:
    """Entry-point factory (``exemplar_similarity``).

    Args:
        weights: weights of a named ``embedder`` (see :func:`diffalign.rewards.load`).
        embedder (str | torch.nn.Module): a registered reward with ``embed`` (e.g. ``clip_score``,
            ``toy_clip``, ``clap``) or a module.
        exemplars (str | None): a parquet of exemplar images (``caption_column``, ``image_column`` bytes).
        texts (Sequence[str] | None): text exemplars instead (one set; needs ``embedder.embed_text``).
        per_prompt (bool): one exemplar set per caption (True) or one set for all samples.
        **kwargs: the named embedder's factory arguments.
    """
    if (exemplars is None) == (texts is None):
        raise ValueError("exemplar_similarity: give exactly one of exemplars (a parquet of images) and texts")
    if isinstance(embedder, str):
        from diffalign.rewards.registry import load

        embedder = load(embedder, weights=weights, **kwargs)
    elif kwargs:
        raise TypeError(f"exemplar_similarity: unexpected arguments {sorted(kwargs)}")
    if not hasattr(embedder, "embed"):
        raise TypeError(f"exemplar_similarity: the embedder {type(embedder).__name__} has no embed(samples) method")
    if texts is not None:
        if not hasattr(embedder, "embed_text"):
            raise TypeError("exemplar_similarity: text exemplars need an embedder with embed_text (CLIP, CLAP)")
        with torch.no_grad():
            centroid = F.normalize(embedder.embed_text(list(texts)).float(), dim=-1).mean(0).cpu()
        return ExemplarSimilarity(embedder, centroid)
    path = Path(exemplars)
    if not path.exists():
        raise FileNotFoundError(f"exemplar_similarity: no exemplar file at {path}")
    return ExemplarSimilarity(embedder, _image_centroids(embedder, path, caption_column, image_column, per_prompt))


build.spec = SPEC  # type: ignore[attr-defined]
