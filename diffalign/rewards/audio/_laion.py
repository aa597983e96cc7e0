"""The ``laion_clap`` backend of the CLAP score (optional: ``pip install diffalign[audio]``).

``laion_clap.CLAP_Module`` downloads ``roberta-base`` (model and tokenizer) in its constructor and
its checkpoints (HF ``lukewys/laion_clap``, CC0-1.0) are pickles holding numpy objects. Here the
constructor's two ``from_pretrained`` calls are redirected to local objects (a randomly initialised
RoBERTa of roberta-base shape, overwritten by the checkpoint; a tokenizer from local files) and the
checkpoint is read only with ``trust_pickle=True``. Set ``HF_HUB_OFFLINE=1`` before the first import
of laion_clap: its module level loads three tokenizers from the hub. Audio goes in as tensors
(``use_tensor=True``: no int16 quantisation, gradients kept); windows of at most 10 s never hit its
random crop (``rand_trunc``); the fusion model (``enable_fusion=True``) needs torchaudio and random
chunks, so it is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F

from diffalign.rewards._tokenizers import check_tokenizer, tiny_roberta_tokenizer
from diffalign.rewards.weights import resolve_weights

__all__ = ["LaionClap", "build_laion_backend"]

ARTIFACTS = {
    "HTSAT-tiny": ("hf://lukewys/laion_clap/630k-audioset-best.pt",),
    "HTSAT-base": ("hf://lukewys/laion_clap/music_audioset_epoch_15_esc_90.14.pt",),
}
TOKENIZER_ARTIFACTS = ("hf://FacebookAI/roberta-base/vocab.json",)


class LaionClap(torch.nn.Module):
    """``CLAP_Module`` backend: windows ``[N, L]`` at 48 kHz → ``[N, 512]``, prompts → ``[N, 512]``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module.eval().requires_grad_(False)
        self.embed_dim = int(module.model.audio_projection[-1].out_features)

    def audio(self, wav: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module.get_audio_embedding_from_data(wav, use_tensor=True), dim=-1)

    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.module.get_text_embedding(list(prompts), use_tensor=True), dim=-1)


def _trusted_state_dict(path: Path) -> dict[str, torch.Tensor]:
    # Opt-in only (trust_pickle=True): laion_clap checkpoints pickle numpy objects.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state.pop("text_branch.embeddings.position_ids", None)  # a buffer in transformers < 4.31 only
    return state


def build_laion_backend(
    weights: Any = None,
    trust_pickle: bool = False,
    amodel: str = "HTSAT-tiny",
    tokenizer: str | Path | None = None,
) -> LaionClap:
    """Builds ``CLAP_Module(enable_fusion=False, amodel, tmodel="roberta")`` without network access.

    Args:
        weights: None (random weights, 2-layer text tower of width 768, byte-level tokenizer), a
            checkpoint path, ``"auto"`` or an ``hf://`` id.
        trust_pickle (bool): Must be True to read a real checkpoint.
        amodel (str): ``"HTSAT-tiny"`` (630k-audioset checkpoints) or ``"HTSAT-base"`` (music ones).
        tokenizer (str | Path | None): roberta-base tokenizer folder; default: the HF cache.
    """
    try:
        import laion_clap
    except ImportError as err:
        raise ImportError("clap backend 'laion_clap' needs the laion extra (it pins numpy<2 and pyarrow<26): pip install 'diffalign[laion]'") from err
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    if weights is None:
        text_model = RobertaModel(RobertaConfig(vocab_size=261, hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                                                intermediate_size=64, max_position_embeddings=80, pad_token_id=1))
        tok = tiny_roberta_tokenizer()
    else:
        if not trust_pickle:
            raise ValueError("clap (laion_clap): its checkpoints are pickles; pass trust_pickle=True for a file you trust")
        ckpt = resolve_weights(weights, f"clap (laion_clap {amodel})", ARTIFACTS.get(amodel, ()))
        vocab = Path(tokenizer) if tokenizer is not None else resolve_weights("auto", "clap tokenizer (roberta-base)", TOKENIZER_ARTIFACTS)
        folder = vocab if vocab.is_dir() else vocab.parent
        tok = check_tokenizer(RobertaTokenizer.from_pretrained(folder, local_files_only=True, model_max_length=77), str(folder))
        text_model = RobertaModel(RobertaConfig())  # roberta-base shapes; the checkpoint overwrites every weight
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(RobertaModel, "from_pretrained", side_effect=lambda *a, **k: text_model))
        stack.enter_context(mock.patch.object(RobertaTokenizer, "from_pretrained", side_effect=lambda *a, **k: tok))
        module = laion_clap.CLAP_Module(enable_fusion=False, amodel=amodel, tmodel="roberta", device="cpu")
    if weights is not None:
        missing, unexpected = module.model.load_state_dict(_trusted_state_dict(ckpt), strict=False)
        if missing or unexpected:
            raise KeyError(f"clap (laion_clap): checkpoint does not match {amodel}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return LaionClap(module)
