"""One intra-op thread for the tiny models of these tests (tests/helpers.py); the tiny SD pipeline."""

import pytest

from tests.helpers import one_thread as _one_thread  # noqa: F401


@pytest.fixture(scope="module")
def pipe(sd_path):
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(sd_path)
    p.set_progress_bar_config(disable=True)
    return p
