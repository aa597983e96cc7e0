"""The custom pipelines carry verbatim copies of ``diffalign.sampling.ddim``: keep them identical."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from sync_pipelines import copies, function_sources, module_path  # noqa: E402


def test_every_marked_function_equals_its_original():
    files = sorted((ROOT / "pipelines").glob("*.py"))
    assert {p.name for p in files} >= {"ddim_inversion.py", "ddim_logprob.py"}
    checked = 0
    for path in files:
        for module, name, copied in copies(path):
            original = function_sources(module_path(module))[name]
            assert copied == original, f"{path.name}: {name} differs from {module}.{name} (run scripts/sync_pipelines.py)"
            checked += 1
    assert checked >= 10


def test_pipelines_import_only_torch_and_diffusers():
    import ast

    for path in sorted((ROOT / "pipelines").glob("*.py")):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
        assert roots <= {"torch", "diffusers", "math", "dataclasses", "__future__"}, (path.name, roots)
