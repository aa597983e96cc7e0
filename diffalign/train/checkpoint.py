"""Checkpoints and final outputs that are valid or absent, never half-written.

Everything here is written as safetensors (tensors) and JSON (scalars); nothing is pickled.

* **Atomic folders** (``atomic_folder``): a folder is written under a temporary name
  (``.tmp-<name>``), every file and the folder are fsync'ed, a ``COMPLETE`` manifest (file names
  and sizes) is written last, and the folder is renamed into place. A kill at any moment leaves
  either the old folder or the new one; leftovers under temporary names are removed on the next
  start. A write that fails (disk full, read-only folder) removes its temporary folder and raises
  one line that names the folder and says that the previous checkpoint is intact.
* **Pruning** renames an old checkpoint out of the ``checkpoint-*`` namespace (``.trash-…``)
  before deleting it, so a kill during the deletion never leaves a half-deleted folder that still
  looks like a checkpoint.
* **Verification on load** (``verify_folder``): the manifest's files exist with their recorded
  sizes and every safetensors header and JSON file parses; ``resume: latest`` falls back to the
  previous checkpoint, with a one-line warning, when the newest fails it.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..faults import fault_point

__all__ = [
    "CKPT_PREFIX",
    "MARKER",
    "atomic_folder",
    "verify_folder",
    "is_complete",
    "clean_leftovers",
    "save_checkpoint",
    "find_checkpoint",
    "checkpoint_candidates",
    "load_checkpoint",
]

CKPT_PREFIX = "checkpoint-"
MARKER = "COMPLETE"
TMP, TRASH = ".tmp-", ".trash-"


class IncompleteError(ValueError):
    """A folder lacks its completion marker or fails its manifest."""


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete a folder by first renaming it out of its namespace (a kill mid-way leaves only ``.trash-*``)."""
    if not path.exists():
        return
    trash = path.with_name(f"{TRASH}{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    fault_point("prune")
    shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(folder: str | Path) -> list[Path]:
    """Remove ``.tmp-*`` and ``.trash-*`` folders that a killed write or prune left in ``folder``."""
    folder = Path(folder)
    gone = [p for p in folder.glob(f"{TMP}*") if p.is_dir()] + [p for p in folder.glob(f"{TRASH}*") if p.is_dir()]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


@contextlib.contextmanager
def atomic_folder(path: str | Path, what: str = "output", previous: str = "") -> Iterator[Path]:
    """Write a folder atomically: yields a temporary folder; on success it becomes ``path``.

    Args:
        path: the folder to create (an existing one is replaced only after the new one is complete).
        what: named in errors (``checkpoint``, ``final output``).
        previous: what stays valid if the write fails, for the error (e.g. the previous checkpoint).
    """
    path = Path(path)
    tmp = path.with_name(f"{TMP}{path.name}")
    site = what.split()[0]
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        fault_point(f"{site}:files")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for f in files:
            _fsync(f)
        manifest = {str(f.relative_to(tmp)): f.stat().st_size for f in files}
        (tmp / MARKER).write_text(json.dumps({"files": manifest}))
        _fsync(tmp / MARKER)
        _fsync(tmp)
        fault_point(f"{site}:marker")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        keep = f"; {previous} is intact" if previous else ""
        raise OSError(e.errno, f"could not write the {what} {path} ({e.strerror or e}){keep}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        _remove(path)
    os.replace(tmp, path)
    _fsync(path.parent)


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a completion marker (cheap; ``verify_folder`` checks the files)."""
    return (Path(path) / MARKER).is_file()


def verify_folder(path: str | Path) -> None:
    """Raise :class:`IncompleteError` (one line) unless ``path`` is a complete, readable folder."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        raise IncompleteError(f"{path}: no {MARKER} marker (an interrupted write)")
    try:
        manifest = json.loads(marker.read_text()).get("files", {})
    except (json.JSONDecodeError, AttributeError):
        manifest = {}  # an older marker without a manifest: check the files that are there
    for name, size in manifest.items():
        f = path / name
        if not f.is_file():
            raise IncompleteError(f"{path}: {name} is missing")
        if f.stat().st_size != size:
            raise IncompleteError(f"{path}: {name} has {f.stat().st_size} bytes, the manifest says {size}")
    for f in path.rglob("*.safetensors"):
        try:
            with safe_open(str(f), framework="pt") as h:
                h.keys()
        except Exception as e:  # noqa: BLE001 - any parse failure means unreadable
            raise IncompleteError(f"{path}: {f.name} is not readable safetensors ({e})") from None
    for f in path.glob("*.json"):
        try:
            json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IncompleteError(f"{path}: {f.name} is not valid JSON ({e})") from None


# ---- trainer state ----------------------------------------------------------------------
def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, s in state["state"].items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta["scalars"][f"{idx}.{k}"] = v
    return tensors, meta


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {"python": repr(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(ast.literal_eval(meta["python"]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def _checkpoints(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob(f"{CKPT_PREFIX}*") if p.is_dir())


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    keep: int = 2,
    tensors: dict[str, torch.Tensor] | None = None,
    check: Callable[[dict], None] | None = None,
) -> Path:
    """Write ``out_dir/checkpoint-<step>`` atomically, then prune to the newest ``keep``.

    Args:
        trainable: name → tensor of the trainable weights (what changes during training).
        state: JSON-serialisable trainer state (step, epoch, loss state, …).
        tensors: more tensors of the trainer state (e.g. a reference pool), written to
            ``state.safetensors``.
        check: called with ``trainable`` before anything is written (e.g. ``check_finite``).
    """
    out_dir = Path(out_dir)
    if check is not None:
        check(trainable)
    final = out_dir / f"{CKPT_PREFIX}{step:08d}"
    older = [p for p in _checkpoints(out_dir) if p != final]
    previous = f"the previous checkpoint {older[-1].name}" if older else ""
    with atomic_folder(final, "checkpoint", previous) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, tmp / "trainable.safetensors")
        fault_point("checkpoint:partial")
        opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_t, tmp / "optimizer.safetensors")
        rng_t, rng_meta = _rng_state()
        save_file(rng_t, tmp / "rng.safetensors")
        if tensors:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / "state.safetensors")
        meta = {"step": step, "trainer": state, "optimizer": opt_meta, "rng": rng_meta,
                "scheduler": scheduler.state_dict()}
        (tmp / "state.json").write_text(json.dumps(meta))
    for old in _checkpoints(out_dir)[:-keep] if keep > 0 else []:
        _remove(old)
    return final


def checkpoint_candidates(out_dir: str | Path, resume: str | None) -> list[Path]:
    """The folders ``resume`` may restore from, newest first (``latest``: every marked checkpoint)."""
    if resume is None:
        return []
    if resume != "latest":
        return [Path(resume)]
    return [p for p in reversed(_checkpoints(Path(out_dir))) if is_complete(p)]


def find_checkpoint(out_dir: str | Path, resume: str | None, warn: Callable[[str], None] = print) -> Path | None:
    """Resolve ``resume`` (``latest`` or a path) to a verified checkpoint folder, or None.

    ``latest`` skips, with one warning line each, checkpoints that fail verification and takes
    the newest that passes; an explicit path that fails raises.
    """
    for path in checkpoint_candidates(out_dir, resume):
        try:
            verify_folder(path)
        except IncompleteError as e:
            if resume != "latest":
                raise FileNotFoundError(f"train.resume: {e}") from None
            warn(f"[resume] warning: skipping {path.name}: {str(e).split(': ', 1)[-1]}; trying the previous one")
            continue
        return path
    return None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict:
    """Restore weights, optimiser, schedule and RNG; returns the trainer state dict."""
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(path / "trainable.safetensors")
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path}: checkpoint has weights the model lacks, e.g. {sorted(missing)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v)
    optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    _set_rng_state(load_file(path / "rng.safetensors"), meta["rng"])
    extra = load_file(path / "state.safetensors") if (path / "state.safetensors").is_file() else {}
    return {"step": meta["step"], **meta["trainer"], "_tensors": extra}


# ---- the final output -------------------------------------------------------------------
def save_final(path: str | Path, write: Callable[[Path], object], weights: dict[str, torch.Tensor] | None = None,
               check: Callable[[dict, str], None] | None = None) -> Path:
    """Write the final output atomically with a completion marker.

    Args:
        path: ``<output_dir>/final``.
        write: ``write(folder)`` saves the model into ``folder`` (a temporary one).
        weights: the trained weights, checked by ``check(weights, what)`` before anything is written
            (the final save refuses non-finite weights).
    """
    path = Path(path)
    if weights is not None and check is not None:
        check(weights, "final output")
    with atomic_folder(path, "final output", "the newest checkpoint") as tmp:
        write(tmp)
    return path


def finished_run(out_dir: str | Path) -> str | None:
    """``None`` for a run still to train; ``"done"`` when ``final/`` is complete and ``summary.json``
    is written; ``"eval"`` when ``final/`` is complete but the closing evaluation did not finish."""
    out = Path(out_dir)
    if not is_complete(out / "final"):
        return None
    return "done" if (out / "summary.json").is_file() else "eval"
