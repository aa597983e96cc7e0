"""Reward registry: Python entry points of the group ``diffalign.rewards``, built-ins included.

A plugin distribution registers a factory ``build(weights=None, **kwargs) -> Reward``::

    [project.entry-points."diffalign.rewards"]
    my_reward = "my_package.my_module:build"

Nothing is imported until :func:`load` (only the chosen plugin) or :func:`list_rewards` (every
plugin, to read its spec). The same name from two distributions is an error, never a silent
shadowing. A source checkout whose editable install predates an edit of ``pyproject.toml`` (or that
is not installed at all) still sees its own table: the built-ins are read from ``pyproject.toml``
when it sits two levels above this package.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["GROUP", "RewardRow", "available", "list_rewards", "load", "providers"]

GROUP = "diffalign.rewards"
_SELF = "diffalign"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class RewardRow(NamedTuple):
    """One line of ``diffalign list rewards``."""

    name: str
    modality: str
    scope: str
    differentiable: bool | None


def _source_table(path: Path = _PYPROJECT) -> dict[str, str] | None:
    """Reads ``[project.entry-points."diffalign.rewards"]`` from a source checkout's pyproject.toml.

    A tiny line parser (``name = "module:attr"`` lines) so that Python 3.10 needs no tomllib.
    Returns None when this is not a diffalign source tree.
    """
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if not any(line.replace(" ", "") == f'name="{_SELF}"' for line in lines):
        return None
    table: dict[str, str] = {}
    inside = False
    for line in lines:
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            inside = stripped == f'[project.entry-points."{GROUP}"]'
        elif inside and "=" in stripped:
            key, value = (part.strip() for part in stripped.split("=", 1))
            table[key.strip("\"'")] = value.strip("\"'")
    return table


def providers() -> dict[str, dict[str, str]]:
    """All registrations: ``name -> {distribution: "module:attr"}``.

    The diffalign distribution's own entries come from the source tree's pyproject.toml when there is
    one (installed metadata can be stale in an editable checkout), else from installed metadata.
    """
    found: dict[str, dict[str, str]] = {}
    for dist in md.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group == GROUP:
                found.setdefault(ep.name, {})[dist_name] = ep.value
    source = _source_table()
    if source is not None:
        for entries in found.values():
            entries.pop(_SELF, None)
        for name, value in source.items():
            found.setdefault(name, {})[_SELF] = value
        found = {name: entries for name, entries in found.items() if entries}
    return dict(sorted(found.items()))


def available() -> dict[str, str]:
    """Registered rewards, ``name -> "module:attr"``, without importing any plugin.

    A name registered by several distributions maps to its first provider here; :func:`load` refuses it.
    """
    return {name: next(iter(entries.values())) for name, entries in providers().items()}


def _resolve(name: str) -> Any:
    entries = providers().get(name)
    if not entries:
        raise KeyError(f"unknown reward {name!r}; registered: {', '.join(available()) or 'none'}")
    if len(set(entries.values())) > 1:
        listing = ", ".join(f"{dist} -> {value}" for dist, value in entries.items())
        raise KeyError(f"reward {name!r} is registered by {len(entries)} distributions ({listing}); uninstall one")
    module_name, _, attr = next(iter(entries.values())).partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def load(name: str, weights: Any = None, **kwargs: Any):
    """Builds the reward registered as ``name``, importing only its module.

    Args:
        name (str): Registry key (see :func:`available`).
        weights (str | os.PathLike | None): None = random weights from a tiny config (tests); a local
            path; or ``"auto"`` = the default artifact from ``$DIFFALIGN_WEIGHTS_DIR`` or the HF cache
            (local files only).
        **kwargs: Passed to the plugin's factory.

    Returns:
        Reward: The built reward module.

    Raises:
        KeyError: Unknown name, or a name registered by several distributions.
        TypeError: The factory did not return a :class:`~diffalign.rewards.base.Reward`.
    """
    from diffalign.rewards.base import Reward

    reward = _resolve(name)(weights=weights, **kwargs)
    if not isinstance(reward, Reward):
        raise TypeError(f"reward {name!r}: factory returned {type(reward).__name__}, not a diffalign Reward")
    return reward


def spec_of(name: str):
    """The :class:`~diffalign.rewards.base.RewardSpec` of ``name`` without building it.

    Read from the factory's ``spec`` attribute (a ``Reward`` subclass registered directly has one),
    else its module's ``SPEC``, else from a tiny build (``factory(weights=None)``, which every plugin
    supports). Imports the plugin's module.
    """
    obj = _resolve(name)
    spec = getattr(obj, "spec", None)
    if spec is None:
        spec = getattr(importlib.import_module(obj.__module__), "SPEC", None)
    if spec is None:
        spec = obj(weights=None).spec
    return spec


def list_rewards() -> list[RewardRow]:
    """Rows ``(name, modality, scope, differentiable)`` for ``diffalign list rewards``.

    Imports each plugin's module to read its spec; a plugin that fails to import (missing optional
    dependency) is listed with ``"?"`` and ``None``.
    """
    rows = []
    for name in available():
        try:
            spec = spec_of(name)
        except Exception:  # noqa: BLE001 - a broken plugin must not break the listing
            rows.append(RewardRow(name, "?", "?", None))
            continue
        rows.append(RewardRow(name, spec.modality, spec.scope, spec.differentiable))
    return rows
