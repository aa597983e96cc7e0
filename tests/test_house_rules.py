"""House rules that a reviewer would otherwise check by hand."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "diffalign").rglob("*.py"))


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}


def test_weights_are_never_pickled():
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if re.search(r"\btorch\.save\(", p.read_text())]
    assert offenders == []


def test_tests_never_load_by_hub_id():
    pattern = re.compile(r"from_pretrained\(\s*[\"'][A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+[\"']")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_importing_the_package_and_config_is_torch_free():
    import subprocess
    import sys

    code = "import sys, diffalign, diffalign.config, diffalign.cli, diffalign.losses; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def _imported_nodes(path: Path, module: str) -> set[str]:
    """The diffalign sub-packages (or top-level modules) that ``path`` imports, at any depth of the file."""
    import ast

    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                targets = [".".join(base + ([node.module] if node.module else []))]
            else:
                targets = [node.module or ""]
        else:
            continue
        found |= {t.split(".")[1] for t in targets if t.startswith("diffalign.")}
    return found


def test_no_package_imports_a_package_that_imports_it_back():
    """Sub-packages (and top-level modules) form a DAG: no import cycle between them, lazy imports included."""
    graph: dict[str, set[str]] = {}
    for p in SOURCES:
        rel = p.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if module == "diffalign":
            continue
        node = module.split(".")[1]
        graph.setdefault(node, set()).update(_imported_nodes(p, module) - {node})
    cycles = []
    for a, deps in graph.items():
        for b in deps:
            seen, todo = set(), [b]
            while todo:
                n = todo.pop()
                if n == a:
                    cycles.append(f"{a} -> {b} -> … -> {a}")
                    break
                if n not in seen:
                    seen.add(n)
                    todo.extend(graph.get(n, ()))
    assert cycles == []
