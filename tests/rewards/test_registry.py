"""Entry-point registry: a throw-away plugin distribution is found and loaded by name."""

import importlib
import subprocess
import sys
import textwrap

import pytest

import diffalign.rewards as rewards
from diffalign.rewards.base import Reward

PLUGIN = '''
import torch
from diffalign.rewards.base import Reward, RewardResult, RewardSpec

class Redness(Reward):
    spec = RewardSpec("redness_tmp", "image", needs_prompt=False, differentiable=True)

    def __init__(self, gain=1.0):
        super().__init__()
        self.gain = gain

    def score(self, samples):
        return RewardResult(self.gain * samples.data[:, 0].mean(dim=(1, 2)))

def build(weights=None, **kwargs):
    return Redness(**kwargs)
'''


def _install(tmp_path, dist, entries, module=None):
    """Writes a minimal dist-info (METADATA + entry_points.txt) and its module onto sys.path."""
    info = tmp_path / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[diffalign.rewards]\n{lines}\n")
    if module:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("tmp_reward_plugin", None)


def test_throwaway_plugin_is_found_and_loaded(plugin_path):
    import torch

    _install(plugin_path, "tmp-reward-dist", {"redness_tmp": "tmp_reward_plugin:build"}, module="tmp_reward_plugin")
    assert rewards.available()["redness_tmp"] == "tmp_reward_plugin:build"
    assert "tmp_reward_plugin" not in sys.modules  # listing names imports nothing
    r = rewards.load("redness_tmp", gain=2.0)
    assert isinstance(r, Reward) and r.spec.name == "redness_tmp"
    x = torch.zeros(2, 3, 4, 4)
    x[1, 0] = 1.0
    assert r(rewards.Samples(x)).scores.tolist() == [0.0, 2.0]
    assert ("redness_tmp", "image", "instance", True) in rewards.list_rewards()


def test_duplicate_registration_is_refused(plugin_path):
    _install(plugin_path, "tmp-reward-dist", {"dup_tmp": "tmp_reward_plugin:build"}, module="tmp_reward_plugin")
    other = plugin_path / "other"
    other.mkdir()
    sys.path.insert(0, str(other))
    try:
        _install(other, "tmp-reward-other", {"dup_tmp": "somewhere_else:build"})
        with pytest.raises(KeyError, match="registered by 2 distributions"):
            rewards.load("dup_tmp")
    finally:
        sys.path.remove(str(other))


def test_unknown_name_lists_what_is_registered():
    with pytest.raises(KeyError, match="unknown reward 'nope'"):
        rewards.load("nope")
def test_builtins_registered_in_pyproject():
    names = set(rewards.available())
    assert {"clip_score", "aesthetic", "pickscore", "hpsv2", "image_reward", "clap", "fad", "vendi"} <= names
    for name, target in rewards.available().items():
        assert ":" in target, (name, target)


def test_load_imports_only_the_chosen_plugin():
    code = (
        "import sys, diffalign.rewards as r\n"
        "assert 'torch' not in sys.modules, 'importing the package must stay cheap'\n"
        "r.available()\n"
        "m = r.load('vendi')\n"
        "mods = sorted(k for k in sys.modules if k.startswith('diffalign.rewards.'))\n"
        "print(mods, 'open_clip' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    mods, open_clip, transformers = out.stdout.rsplit(" ", 2)
    assert "diffalign.rewards.image" not in mods and "diffalign.rewards.audio" not in mods, mods
    assert (open_clip, transformers.strip()) == ("False", "False")
