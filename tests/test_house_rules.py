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
