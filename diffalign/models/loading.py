"""Finding weights: a local path, else the HF cache (local files only), else one clear error.

Nothing here downloads. With internet, fetch weights first (``huggingface-cli download
<id>``) or pass a local folder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WeightsNotFound", "resolve_pretrained"]


class WeightsNotFound(FileNotFoundError):
    """Raised when a model or weight file is neither a local path nor in the HF cache."""


def resolve_pretrained(name_or_path: str, what: str = "model") -> str:
    """Return a local folder for ``name_or_path``.

    Args:
        name_or_path (str): a local folder, or a hub id (``org/name``) already in the HF cache.
        what (str): what is being loaded, for the error message (e.g. ``model.path``).

    Raises:
        WeightsNotFound: neither a local folder nor cached; the message says how to fix it.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name_or_path, local_files_only=True)
    except Exception:  # noqa: BLE001 — any failure means "not available offline"
        raise WeightsNotFound(
            f"{what}: {name_or_path!r} is not a local folder and is not in the Hugging Face cache; "
            f"download it where there is internet (`huggingface-cli download {name_or_path}`) "
            f"or set a local path"
        ) from None
