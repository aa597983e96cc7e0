"""Session-wide test settings (offline, seeded, few threads) and the tiny diffusion fixtures.

Every test runs in one pytest process; heavy components are built once per session (here and in
the sub-packages' conftest files). Tests mirror the package: ``tests/<package>/test_<module>.py``.
"""

import os

# Must be set before transformers / huggingface_hub are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import RES, _parts, pair_rows, write_parquet  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("DIFFALIGN_RELIABILITY_TABLE")
    if out:
        import json

        from tests.helpers import MESSAGES

        with open(out, "w") as fh:
            json.dump(MESSAGES, fh, indent=1, ensure_ascii=False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ---- tiny diffusion components and pair data, shared by methods/models/data/train/eval/bench tests ----
@pytest.fixture(scope="session")
def sd_path(tmp_path_factory):
    """A saved tiny StableDiffusionPipeline folder (ε-prediction)."""
    from diffusers import StableDiffusionPipeline

    d = tmp_path_factory.mktemp("tiny_sd")
    pipe = StableDiffusionPipeline(**_parts(d, xl=False), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(d / "pipe")
    return str(d / "pipe")


@pytest.fixture(scope="session")
def sdxl_path(tmp_path_factory):
    """A saved tiny StableDiffusionXLPipeline folder (two text encoders, text_time embedding)."""
    from diffusers import StableDiffusionXLPipeline

    d = tmp_path_factory.mktemp("tiny_sdxl")
    StableDiffusionXLPipeline(**_parts(d, xl=True)).save_pretrained(d / "pipe")
    return str(d / "pipe")


@pytest.fixture(scope="session")
def audioldm_path(tmp_path_factory):
    """A saved tiny AudioLDMPipeline folder (no attention blocks, as the toy tones pipeline) with its
    ``mel_config.json``."""
    from tests.helpers import save_audioldm

    return save_audioldm(tmp_path_factory.mktemp("tiny_audioldm") / "pipe")


@pytest.fixture(scope="session")
def audioldm2_path(tmp_path_factory):
    """A saved tiny AudioLDM2Pipeline folder (CLAP + T5 + GPT-2, a two-stream U-Net)."""
    from tests.helpers import save_audioldm2

    return save_audioldm2(tmp_path_factory.mktemp("tiny_audioldm2") / "pipe")


@pytest.fixture(scope="session")
def audio_pairs_parquet(tmp_path_factory):
    """8 audio pairs (FLAC), labelled by pitch."""
    from tests.helpers import audio_pair_rows

    return write_parquet(audio_pair_rows(8), tmp_path_factory.mktemp("audio_pairs") / "pairs.parquet")


@pytest.fixture(scope="session")
def pairs_parquet(tmp_path_factory):
    """12 pairs: 8 with a clear label, 4 ties (label 0.5); non-square images of varied size."""
    d = tmp_path_factory.mktemp("pairs")
    return write_parquet(pair_rows(12, labels=(1.0, 0.0, 0.5)), d / "pairs.parquet")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One latent-cache root for the session: caches are keyed, so tests share them."""
    return str(tmp_path_factory.mktemp("latent_cache"))


@pytest.fixture
def dcfg(sd_path, pairs_parquet, cache_dir, tmp_path):
    """A factory of tiny diffusion-DPO configs; keyword overrides go into sections."""
    from diffalign.train import parse_config

    def make(**sections):
        data = {
            "trainer": "diffusion",
            "model": {"path": sd_path, "lora": {"r": 4, "alpha": 4, "init": "gaussian"}},
            "data": {"source": pairs_parquet, "resolution": RES, "cache_dir": cache_dir},
            "loss": {"kinds": "sigmoid", "beta": 5000.0},
            "train": {"output_dir": str(tmp_path / "out"), "batch_size": 2, "max_steps": 3, "lr": 1e-3,
                      "log_every": 1},
        }
        for sec, val in sections.items():
            if val is None or not isinstance(val, dict):
                data[sec] = val
            else:
                data[sec] = {**(data.get(sec) or {}), **val}
        return parse_config(data, "<test>")

    return make


@pytest.fixture(scope="session")
def lora_out(sd_path, tmp_path_factory):
    """A perturbed LoRA of the tiny SD, saved for diffusers."""
    import torch

    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    with torch.no_grad():
        for n, p in comp.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return str(comp.family.save_lora(comp.unet, tmp_path_factory.mktemp("lora") / "final"))
