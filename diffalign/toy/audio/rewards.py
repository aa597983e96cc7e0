"""Reward plugins of the toy audio world "tones" (16 kHz): pitch fidelity and a fixed audio embedding.

Four entry points:

* ``toy_pitch`` (instance, not differentiable): graded agreement of a clip with the pitch band and
  the timbre its prompt names (:func:`diffalign.toy.audio.scorer.score_pitch`); ``details["correct"]``
  is the binary band accuracy, ``details["timbre_correct"]`` and ``details["joint"]`` the timbre's and
  both, ``details["f0"]`` the detected fundamental. A prompt that names no band (no
  low/deep/mid/medium/high/shrill) scores 0.
* ``toy_audio_embed`` (instance_to_set, differentiable): the toy audio embedding (per-band log-mel
  mean and std, standardised, 64-d) with ``embed`` / ``embed_frames`` for FAD and Vendi; its own
  score is the clip's typicality under the world: ``−½ (e − μ)ᵀ Σ⁻¹ (e − μ) / D`` against the
  Gaussian of rendered clips (higher = more like the world's ground truth).
* ``toy_audio_fad``: :class:`~diffalign.rewards.fad.FrechetDistance` on that embedding against the
  committed reference statistics (``per_sample=True`` for the per-clip variant).
* ``toy_audio_vendi``: :class:`~diffalign.rewards.vendi.Vendi` on that embedding.

The embedding statistics live in the toy audio assets (``embedder.safetensors``, ``fad_reference.npz``);
``weights`` may point at another asset folder. Without built assets the statistics are fitted on
256 seeded renders (a few seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.distribution import ReferenceStats

__all__ = ["PITCH_SPEC", "EMBED_SPEC", "ToyAudioEmbed", "ToyPitch", "build_toy_audio_embed", "build_toy_audio_fad",
           "build_toy_audio_vendi", "build_toy_pitch"]

PITCH_SPEC = RewardSpec("toy_pitch", "audio", scope="instance", needs_prompt=True, differentiable=False,
                        sample_rate=16000, max_batch_size=256)
EMBED_SPEC = RewardSpec("toy_audio_embed", "audio", scope="instance_to_set", needs_prompt=False, differentiable=True,
                        sample_rate=16000, max_batch_size=256)


class ToyPitch(Reward):
    """Graded pitch-band and timbre fidelity in [0, 1] (see :mod:`diffalign.toy.audio.scorer`)."""

    spec = PITCH_SPEC

    def score(self, samples: Samples) -> RewardResult:
        from diffalign.toy.audio.scorer import score_pitch

        out = score_pitch(samples.data.mean(dim=1), list(samples.prompts), samples.sample_rate)
        details = {k: out[k].float() for k in ("correct", "timbre_correct", "joint", "f0", "clarity", "p_target",
                                                  "q_target", "has_band")}
        return RewardResult(out["graded"], {"raw": out["graded"], **details})


def _asset_folder(weights: Any) -> Path | None:
    """The folder holding ``embedder.safetensors``: ``weights`` if given, else the committed assets if built."""
    if weights is not None:
        folder = Path(weights)
        if not (folder / "embedder.safetensors").is_file():
            raise FileNotFoundError(f"{folder}: no embedder.safetensors (a toy audio asset folder is expected)")
        return folder
    from diffalign.toy.audio.assets import audio_asset_dir

    try:
        return audio_asset_dir()
    except FileNotFoundError:
        return None


def _fitted_stats(n: int = 256, seed: int = 0):
    """Embedding and reference statistics fitted on ``n`` seeded renders of training prompts."""
    from diffalign.toy.audio.scorer import EmbeddingStats, embed_audio
    from diffalign.toy.audio.world import TonesWorld

    world = TonesWorld()
    wave, _ = world.render_prompts(world.sample_training_prompts(n, seed), seed + 1)
    wave = torch.from_numpy(wave)
    stats = EmbeddingStats.fit(wave)
    ref = ReferenceStats.from_embeddings(embed_audio(wave, stats), encoder="toy_audio_embed", clips=n)
    return stats, ref


class ToyAudioEmbed(Reward):
    """The toy audio embedding as a module (``embed``, ``embed_frames``) and a typicality reward.

    Args:
        folder (str | Path | None): Asset folder with ``embedder.safetensors`` and ``fad_reference.npz``;
            None = the committed assets, or statistics fitted on renders when none are built.
    """

    spec = EMBED_SPEC
    embed_dim = 64

    def __init__(self, folder: str | Path | None = None) -> None:
        super().__init__()
        from diffalign.toy.audio.scorer import EmbeddingStats

        if folder is not None:
            stats = EmbeddingStats.load(Path(folder) / "embedder.safetensors")
            ref = ReferenceStats.load(Path(folder) / "fad_reference.npz")
            ref.meta = {"encoder": "toy_audio_embed", "folder": str(folder)}
        else:
            stats, ref = _fitted_stats()
        self.register_buffer("feat_mean", stats.mean.float())
        self.register_buffer("feat_std", stats.std.float())
        self.reference = ref
        cov = ref.cov.double() + 1e-6 * torch.eye(ref.cov.shape[0], dtype=torch.float64)
        self.register_buffer("ref_mu", ref.mu.double())
        self.register_buffer("ref_precision", torch.linalg.inv(cov))

    def _stats(self):
        from diffalign.toy.audio.scorer import EmbeddingStats

        return EmbeddingStats(self.feat_mean, self.feat_std)

    def embed(self, samples: Samples) -> torch.Tensor:
        """Clip embeddings ``[B, 64]``."""
        from diffalign.toy.audio.scorer import embed_audio

        return embed_audio(samples.data.float().mean(dim=1), self._stats())

    def embed_frames(self, samples: Samples) -> torch.Tensor:
        """Window embeddings ``[B, W, 64]`` (0.26 s windows, hop 0.13 s)."""
        from diffalign.toy.audio.scorer import embed_audio_frames

        return embed_audio_frames(samples.data.float().mean(dim=1), self._stats())

    def score(self, samples: Samples) -> RewardResult:
        diff = self.embed(samples).double() - self.ref_mu  # [B, 64]
        typicality = -0.5 * ((diff @ self.ref_precision) * diff).sum(-1) / diff.shape[-1]
        return RewardResult(typicality.float(), {"raw": typicality.detach().float()})


def build_toy_pitch(weights: Any = None) -> ToyPitch:
    """Entry-point factory (``toy_pitch``); programmatic, ``weights`` is unused."""
    return ToyPitch()


def build_toy_audio_embed(weights: Any = None) -> ToyAudioEmbed:
    """Entry-point factory (``toy_audio_embed``); ``weights`` = an asset folder (default: the committed one)."""
    return ToyAudioEmbed(_asset_folder(weights))


def build_toy_audio_fad(weights: Any = None, per_sample: bool = False, **kwargs: Any):
    """Entry-point factory (``toy_audio_fad``): FAD in the toy embedding against the world's reference.

    Args:
        weights: Asset folder (default: the committed one).
        per_sample (bool): Per-clip FAD over 0.26 s windows (scope ``instance_to_set``). Default is False.
        **kwargs: :class:`~diffalign.rewards.fad.FrechetDistance` options (``fad_inf``, ``inf_sizes``, ``seed``, ``eps``).
    """
    from dataclasses import replace

    from diffalign.rewards.fad import FrechetDistance, PerSampleFrechet

    embedder = build_toy_audio_embed(weights)
    cls = PerSampleFrechet if per_sample else FrechetDistance
    reward = cls(embedder, reference=embedder.reference, **kwargs)
    reward.spec = replace(reward.spec, name="toy_audio_fad", weights=())
    return reward


def build_toy_audio_vendi(weights: Any = None, q: float = 1.0, **kwargs: Any):
    """Entry-point factory (``toy_audio_vendi``): Vendi score of a batch in the toy embedding."""
    from dataclasses import replace

    from diffalign.rewards.vendi import Vendi

    reward = Vendi(build_toy_audio_embed(weights), q=q, **kwargs)
    reward.spec = replace(reward.spec, name="toy_audio_vendi")
    return reward
