"""What both toy worlds' asset folders share: where they live, JSON files, sampling defaults.

``assets/toy/<world>/`` holds a diffusers ``pipeline/`` and a ``build_info.json`` (written by
``diffalign toy build <world>``); ``$DIFFALIGN_TOY_ASSETS/<world>`` overrides the location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["asset_dir", "folder_sizes", "read_json", "sampling_defaults"]


def asset_dir(world: str) -> Path:
    """The committed assets of ``world``: ``$DIFFALIGN_TOY_ASSETS/<world>``, else ``<repo>/assets/toy/<world>``."""
    root = os.environ.get("DIFFALIGN_TOY_ASSETS")
    path = Path(root) / world if root else Path(__file__).resolve().parents[2] / "assets" / "toy" / world
    if not (path / "pipeline" / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no toy {world} assets in {path}; run `diffalign toy build {world}` "
            f"or point DIFFALIGN_TOY_ASSETS at a folder that holds {world}/"
        )
    return path


def read_json(path: str | Path) -> dict:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def sampling_defaults(folder: str | Path, fallback: dict) -> dict:
    """The sampling settings a build recorded in ``build_info.json``, else ``fallback`` (a copy)."""
    info = Path(folder) / "build_info.json"
    return read_json(info)["sampling"] if info.is_file() else dict(fallback)


def folder_sizes(folder: Path) -> dict:
    """Bytes per top-level entry of an asset folder, their total, and the largest single file."""
    out = {}
    for p in sorted(folder.iterdir()):
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        out[p.name] = sum(f.stat().st_size for f in files)
    largest = max((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    return {"per_entry": out, "total": sum(out.values()),
            "largest_file": [str(largest.relative_to(folder)), largest.stat().st_size]}
