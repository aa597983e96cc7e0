"""Rewrite the functions that ``pipelines/*.py`` copy from ``diffalign`` (the ``# Copied from`` marks).

The custom pipelines must import only torch and diffusers, so they carry verbatim copies of the
DDIM functions of ``diffalign/sampling/ddim.py``. A function preceded by a line
``# Copied from diffalign.sampling.ddim.<name>`` is replaced by the current source of ``<name>``
(decorators included). ``tests/pipelines/test_copies.py`` fails when a copy drifts; run::

    python scripts/sync_pipelines.py          # rewrite the copies
    python scripts/sync_pipelines.py --check  # exit 1 if any copy differs
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"^# Copied from (diffalign(?:\.\w+)+)\.(\w+)\s*$")


def function_sources(path: Path) -> dict[str, str]:
    """Top-level function name → its source text, decorators included."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            out[node.name] = "".join(lines[start : node.end_lineno])
    return out


def module_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"cannot find module {module}")
    return Path(spec.origin)


def copies(path: Path) -> list[tuple[str, str, str]]:
    """``(module, name, copied source)`` of every marked function of a pipeline file."""
    text = path.read_text()
    mine = function_sources(path)
    out = []
    for line in text.splitlines():
        m = MARK.match(line)
        if m:
            out.append((m.group(1), m.group(2), mine.get(m.group(2), "")))
    return out


def sync(path: Path, check: bool) -> bool:
    """Rewrite (or check) the copies of one file; True when they were already identical."""
    text, ok = path.read_text(), True
    for module, name, copied in copies(path):
        original = function_sources(module_path(module))[name]
        if copied != original:
            ok = False
            if not check:
                text = text.replace(copied, original) if copied else text
    if not check and not ok:
        path.write_text(text)
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only report; exit 1 when a copy differs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    bad = [p for p in sorted((ROOT / "pipelines").glob("*.py")) if not sync(p, args.check)]
    for p in bad:
        print(f"{'differs' if args.check else 'rewrote'}: {p.relative_to(ROOT)}")
    return 1 if (bad and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
