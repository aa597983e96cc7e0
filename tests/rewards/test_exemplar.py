"""exemplar_similarity: per-prompt centroids from an exemplar parquet, one text centroid, NaN where no set."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffalign.rewards import Samples, load
from diffalign.rewards.exemplar import ExemplarSimilarity


class MeanColour(torch.nn.Module):
    """A transparent embedder: the mean RGB of an image (plus 0.1, so that no embedding is zero)."""

    def embed(self, samples):
        return samples.data.mean(dim=(2, 3)) + 0.1


def _png(rgb):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def exemplars(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"caption": ["red", "red", "blue"], "image": [_png((255, 0, 0)), _png((200, 0, 0)), _png((0, 0, 255))]}
    path = tmp_path / "ex.parquet"
    pq.write_table(pa.table(rows), path)
    return str(path)


def test_per_prompt_centroids_by_hand(exemplars):
    from diffalign.rewards.exemplar import build

    r = build(embedder=MeanColour(), exemplars=exemplars)
    x = torch.zeros(3, 3, 4, 4)
    x[0, 0] = 1.0  # pure red
    x[1, 2] = 1.0  # pure blue
    out = r(Samples(x, ["red", "red", "green"]))
    e = F.normalize(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]) + 0.1, dim=-1)  # embeddings of x[0], x[1]
    reds = F.normalize(torch.tensor([[1.0, 0, 0], [200 / 255, 0, 0]]) + 0.1, dim=-1).mean(0)
    centroid = F.normalize(reds, dim=0)
    assert math.isclose(float(out.scores[0]), float(e[0] @ centroid), rel_tol=1e-5)
    assert math.isclose(float(out.scores[1]), float(e[1] @ centroid), rel_tol=1e-5)
    assert out.scores[0] > out.scores[1]  # red is closer to the red exemplars than blue is
    assert math.isnan(float(out.scores[2]))  # no exemplars for "green": not applicable
    torch.testing.assert_close(out.details["distance"][:2], 1 - out.scores[:2])
    assert r.spec.scope == "instance_to_set" and r.spec.needs_prompt


def test_one_set_and_argument_errors(exemplars):
    from diffalign.rewards.exemplar import build

    one = build(embedder=MeanColour(), exemplars=exemplars, per_prompt=False)
    assert not one.spec.needs_prompt and torch.isfinite(one(Samples(torch.rand(2, 3, 4, 4))).scores).all()
    with pytest.raises(ValueError, match="exactly one of exemplars"):
        build(embedder=MeanColour())
    with pytest.raises(FileNotFoundError, match="no exemplar file"):
        build(embedder=MeanColour(), exemplars="missing.parquet")
    with pytest.raises(TypeError, match="need an embedder with embed_text"):
        build(embedder=MeanColour(), texts=["red"])
    with pytest.raises(ValueError, match="empty"):
        ExemplarSimilarity(MeanColour(), {})


def test_text_exemplars_through_the_registry():
    r = load("exemplar_similarity", embedder="toy_clip", texts=["a red circle"])
    assert r.spec.modality == "image" and r.spec.differentiable
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(r(Samples(x)).scores, r(Samples(x.flip(0))).scores.flip(0))
