"""What both toy worlds' asset folders share: where they live, JSON files, sampling defaults.

``assets/toy/<world>/`` holds a diffusers ``pipeline/`` and a ``build_info.json`` (written by
``diffalign toy build <world>``); ``$DIFFALIGN_TOY_ASSETS/<world>`` overrides the location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["BuildRun", "asset_dir", "folder_sizes", "learn_merges", "read_json", "sampling_defaults"]


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


def learn_merges(symbols: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair (ties broken alphabetically, so the files are
    reproducible) until every word is one symbol.

    Args:
        symbols (dict[str, list[str]]): word → its initial symbols, e.g. CLIP's ``[..., "d</w>"]`` or
            RoBERTa's ``["Ġ", "r", "e", "d"]``.

    Returns:
        list[tuple[str, str]]: merges in rank order (the toy tokenizers' ``merges.txt``).
    """
    from collections import Counter

    seqs = {w: list(s) for w, s in sorted(symbols.items())}
    merges = []
    while True:
        pairs = Counter(p for s in seqs.values() for p in zip(s, s[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out


def folder_sizes(folder: Path) -> dict:
    """Bytes per top-level entry of an asset folder, their total, and the largest single file."""
    out = {}
    for p in sorted(folder.iterdir()):
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        out[p.name] = sum(f.stat().st_size for f in files)
    largest = max((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    return {"per_entry": out, "total": sum(out.values()),
            "largest_file": [str(largest.relative_to(folder)), largest.stat().st_size]}


class BuildRun:
    """One run of a toy world's staged build: the one ``build_info.json`` schema and the one way to
    write an asset folder.

    The run writes into ``<out>.partial`` and swaps it in only when :meth:`finish` is called, so a
    failed build leaves the previous assets untouched. ``update=True`` starts from a copy of the
    finished build in ``out`` and keeps its ``build_info.json``: only the stages run again are
    re-timed (``diffalign toy build image --only judge,prefs``).

    ``build_info.json`` keys every world shares: ``world``, ``seed``, ``config``, ``sampling``,
    ``stage_seconds`` (stage → wall seconds, in run order), ``pretrain_seconds``, ``total_seconds``
    (sum of stages), ``environment`` (library versions, CPUs, threads), ``command``, ``sizes``
    (``folder_sizes``) and ``updates`` (the stages of each later ``update`` run).

    Args:
        out (str | Path): the asset folder. world (str): ``image`` or ``audio``.
        update (bool): re-run some stages of the finished build in ``out``.
        log_prefix (str): prefix of progress lines.
    """

    def __init__(self, out: str | Path, world: str, update: bool = False, log_prefix: str | None = None):
        import shutil
        import time

        self.out = Path(out)
        self.tmp = self.out.with_name(self.out.name + ".partial")
        self.prefix = log_prefix or f"[toy build {world}]"
        self.t_start = time.time()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if update:
            if not (self.out / "build_info.json").is_file():
                raise FileNotFoundError(f"{self.out}: no finished build to update (no build_info.json)")
            shutil.copytree(self.out, self.tmp)
            self.info = read_json(self.tmp / "build_info.json")
        else:
            self.tmp.mkdir(parents=True)
            self.info = {"world": world, "stage_seconds": {}}
        self.updated: list[str] = []
        self.update = update

    def log(self, msg: str) -> None:
        import time

        print(f"{self.prefix} [{time.time() - self.t_start:7.1f} s] {msg}", flush=True)

    def record(self, name: str, t0: float) -> None:
        """Record a stage that started at ``time.time() == t0`` and has just ended."""
        import time

        self.info["stage_seconds"][name] = round(time.time() - t0, 1)
        self.updated.append(name)
        self.log(f"stage {name}: {self.info['stage_seconds'][name]:.1f} s")

    def stage(self, name: str):
        """Context manager timing one stage into ``stage_seconds``."""
        import contextlib
        import time

        @contextlib.contextmanager
        def timed():
            t0 = time.time()
            yield
            self.record(name, t0)

        return timed()

    def finish(self, readme) -> dict:
        """Record environment and sizes, write ``build_info.json`` and ``README.md`` (``readme(info) -> str``),
        and swap the folder in. Returns the build info."""
        import os
        import platform
        import shutil

        import torch

        info = self.info
        info["total_seconds"] = round(sum(info["stage_seconds"].values()), 1)
        env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
               "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
        for lib in ("diffusers", "transformers", "open_clip"):
            try:
                env[lib] = __import__(lib).__version__
            except ImportError:
                pass
        if self.update:
            info.setdefault("updates", []).append({"stages": self.updated, "environment": env})
        else:
            info["environment"] = env
        for name in ("README.md", "build_info.json"):  # listed in the sizes, rewritten right after
            (self.tmp / name).write_text("")
        info["sizes"] = folder_sizes(self.tmp)
        (self.tmp / "README.md").write_text(readme(info))
        (self.tmp / "build_info.json").write_text(json.dumps(info, indent=1, default=float))
        shutil.rmtree(self.out, ignore_errors=True)
        self.tmp.rename(self.out)
        self.log(f"done: {self.out} ({info['sizes']['total'] / 1e6:.1f} MB; stages {', '.join(self.updated)})")
        return info
