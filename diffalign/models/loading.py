"""Finding weights: a local path, else the HF cache (local files only), else one clear error.

Nothing here downloads. With internet, fetch weights first (``huggingface-cli download
<id>``) or pass a local folder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WeightsNotFound", "PickleRefused", "resolve_pretrained", "safe_from_pretrained"]


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


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class PickleRefused(OSError):
    """A folder holds model weights only as pickles, and pickles were not trusted."""


def _pickles(folder: Path) -> list[str]:
    """Pickled weight files in ``folder`` and its sub-folders (a pipeline's ``unet/`` …), relative names."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES]
    found += [p for p in folder.glob("*/*") if p.suffix in PICKLE_SUFFIXES]
    return sorted(str(p.relative_to(folder)) for p in found)


def safe_from_pretrained(cls, root: str, what: str, subfolder: str | None = None, trust_pickle: bool = False, **kw):
    """``cls.from_pretrained`` that reads safetensors only unless ``trust_pickle``.

    diffusers and transformers fall back to pickled ``.bin`` weights when a folder has no
    safetensors; a pickle can run code when it is read. By default we pass
    ``use_safetensors=True`` and turn the library's error into one line naming the folder and
    the pickle files; ``trust_pickle=True`` (a documented opt-in for files you trust) lets the
    library read them.

    Args:
        cls: a diffusers or transformers class with ``from_pretrained``.
        root (str): local folder. what (str): the config key, for errors (``model.path``).
        subfolder (str | None): e.g. ``unet``.
    """
    if subfolder is not None:
        kw["subfolder"] = subfolder
    try:
        return cls.from_pretrained(root, use_safetensors=None if trust_pickle else True, **kw)
    except (OSError, EnvironmentError, ValueError) as e:
        folder = Path(root) / (subfolder or "")
        found = _pickles(folder)
        if trust_pickle or not found:
            raise
        raise PickleRefused(f"{what}: {folder} holds weights only as pickles ({', '.join(found[:3])}); diffalign "
                            f"reads safetensors unless told otherwise — convert them, or set trust_pickle: true "
                            f"for files you trust") from e
