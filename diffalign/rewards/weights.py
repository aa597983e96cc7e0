"""Where reward weights come from: an explicit path, ``$DIFFALIGN_WEIGHTS_DIR``, or the HF cache.

Resolution order (reference/rewards.md §6):

1. ``weights=None``: the plugin builds random weights from a tiny config (tests; no files, no network);
   handled by each factory, never here.
2. ``weights=<path>``: that file or folder; it must exist.
3. ``weights="auto"`` (the plugin's default artifact) or ``weights="hf://<org>/<repo>/<file>"``:
   ``$DIFFALIGN_WEIGHTS_DIR/<org>/<repo>/<file>``, then the Hugging Face cache
   with ``local_files_only=True``. Nothing is downloaded.

Otherwise one line, naming the file to provide, is raised as :class:`WeightsNotFoundError`.
Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)``; pickles that need
arbitrary code (laion_clap) are loaded only behind an explicit ``trust_pickle=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["WeightsNotFoundError", "load_state_dict", "parse_artifact", "resolve_weights"]


class WeightsNotFoundError(FileNotFoundError):
    """A reward's weights file is neither at the given path nor in the local caches."""


def parse_artifact(artifact: str) -> tuple[str, str]:
    """``"hf://org/repo/path/file"`` → ``("org/repo", "path/file")``."""
    if not artifact.startswith("hf://") or artifact.count("/") < 4:
        raise ValueError(f"artifact ids look like 'hf://org/repo/file', got {artifact!r}")
    org, repo, filename = artifact[len("hf://") :].split("/", 2)
    return f"{org}/{repo}", filename


def _local_candidates(repo_id: str, filename: str) -> list[Path]:
    root = os.environ.get("DIFFALIGN_WEIGHTS_DIR")
    if not root:
        return []
    return [Path(root).expanduser() / repo_id / filename]  # repo-qualified: many files are "model.safetensors"


def _from_hf_cache(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends: "not cached"
        return None


def resolve_weights(weights: str | os.PathLike, reward: str, artifacts: Sequence[str], note: str = "") -> Path:
    """Finds a reward's weights without touching the network.

    Args:
        weights (str | os.PathLike): A local path, ``"auto"`` or an ``hf://org/repo/file`` id.
        reward (str): Reward name, for the error message.
        artifacts (Sequence[str]): The plugin's default artifact ids in preference order (e.g. a
            ``.safetensors`` before a ``.bin`` of the same weights); used for ``"auto"``.
        note (str): Appended to the error, e.g. the companion files a ``from_pretrained`` folder needs.

    Returns:
        Path: An existing file (or folder, for a local path).

    Raises:
        WeightsNotFoundError: One line naming the file to provide.
    """
    if weights is None:
        raise ValueError(f"{reward}: weights=None means random tiny weights; the factory handles it")
    text = os.fspath(weights)
    if text != "auto" and not text.startswith("hf://"):
        path = Path(text).expanduser()
        if path.exists():
            return path
        wanted = parse_artifact(artifacts[0])[1] if artifacts else "the weights file"
        raise WeightsNotFoundError(f"{reward}: weights path {path} does not exist; provide {wanted!r} there{note}")
    candidates = list(artifacts) if text == "auto" else [text]
    if not candidates:
        raise WeightsNotFoundError(f"{reward}: no default artifact for this configuration; pass weights=<path>")
    for artifact in candidates:
        repo_id, filename = parse_artifact(artifact)
        for path in _local_candidates(repo_id, filename):
            if path.exists():
                return path
        cached = _from_hf_cache(repo_id, filename)
        if cached is not None:
            return cached
    repo_id, filename = parse_artifact(candidates[0])
    raise WeightsNotFoundError(
        f"{reward}: weights not found offline; provide '{filename}'{note} from https://huggingface.co/{repo_id} "
        f"(weights=<path>, $DIFFALIGN_WEIGHTS_DIR/{repo_id}/{filename}, or the HF cache)"
    )


def load_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """Reads a state dict from ``.safetensors`` or a ``torch.save`` file with ``weights_only=True``.

    Args:
        path (str | os.PathLike): The checkpoint.
        key (str | None): Sub-dict to return when present (e.g. ``"state_dict"`` in HPS checkpoints).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None and isinstance(state, dict) and key in state:
        state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}
