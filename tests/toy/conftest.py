"""Toy-world fixtures: the committed image assets loaded once per session, and one quick build."""

import pytest


@pytest.fixture(scope="session")
def image_assets():
    """Folder of the committed shapes-world assets (assets/toy/image)."""
    from diffalign.toy.image.assets import image_asset_dir

    return image_asset_dir()


@pytest.fixture(scope="session")
def toy_pipeline(image_assets):
    """The committed toy StableDiffusionPipeline, loaded with plain diffusers."""
    from diffalign.toy.image.assets import load_pipeline

    return load_pipeline(image_assets)


@pytest.fixture(scope="session")
def toy_clip(image_assets):
    """(model, tokenizer) of the committed toy_clip, loaded through open_clip's local-dir route."""
    from diffalign.toy.image.clip import load_toy_clip

    return load_toy_clip(image_assets / "toy_clip")


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory):
    """A `--quick` image build into a temporary folder (every stage, tiny sizes)."""
    from diffalign.toy.commands import main

    out = tmp_path_factory.mktemp("toy") / "image"
    assert main(["toy", "build", "image", "--quick", "--out", str(out), "--threads", "2"]) == 0
    return out
