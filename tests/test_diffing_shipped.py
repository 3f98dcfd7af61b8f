"""The shipped diffing result (assets/demo/results/diffing/) against a cheap slice recomputed now on the demo pair
with the study's own functions: the harmless turn's per-token table and lens, the activation difference and its
reading at the layer where its relative norm peaks, and its cosines with the shipped study directions."""
import numpy as np
import pytest
import torch

from analyses.diffing import STUDY, Config, default_data
from analyses.diffing import difference as dif
from analyses.diffing.compute import study_directions
from analyses.diffing.divergence import diff_text
from steering.lens import token_ids

pytestmark = pytest.mark.demo
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


def test_the_harmless_turn_matches(demo_pair, result):
    config, data = Config(), default_data(demo_pair, Config())
    text = dict(data.texts)["harmless"]
    assert result.texts["harmless"] == text
    ids = token_ids(demo_pair.tokenizer, text, list(demo_pair.models().values()))
    ours = diff_text(demo_pair.tokenizer, demo_pair.models(), ids, config.position, config.top_n)
    stored = result.tokens[result.tokens["text"] == "harmless"].reset_index(drop=True)
    assert ours.position == result.positions["harmless"]
    assert list(ours.tokens["token"]) == list(stored["token"])
    for column in ("kl_post_base", "kl_base_post", "tv"):
        assert np.allclose(ours.tokens[column], stored[column], rtol=TOLERANCE, atol=TOLERANCE)
    assert (ours.tokens["rank_post"].dropna() == stored["rank_post"].dropna()).all()
    lens = result.lens[result.lens["text"] == "harmless"]
    top = lambda t: t[t["rank"] == 1].sort_values(["model", "layer"])["token_id"].tolist()  # noqa: E731
    assert top(ours.lens) == top(lens)


def test_the_activation_difference_and_its_reading_match(demo_pair, result):
    config, data = Config(), default_data(demo_pair, Config())
    direction, delta, norms = dif.activation_difference(demo_pair, data.plain, config.k, config.batch_size,
                                                        STUDY.data_hash(data), lambda done, total: None)
    assert torch.allclose(direction.vectors, result.difference.vectors, rtol=TOLERANCE, atol=TOLERANCE * 10)
    assert np.allclose(norms["relative"], result.difference_norms["relative"], rtol=TOLERANCE, atol=1e-5)
    layer = int(result.difference_norms.iloc[:-1]["relative"].idxmax())
    read = dif.read_difference(demo_pair, delta[layer:layer + 1], torch.tensor(norms["resid_norm"].to_numpy(),
                               dtype=torch.float32)[layer:layer + 1], config.reading, config.top_n)
    stored = result.difference_tokens[result.difference_tokens["layer"] == layer]
    assert read["token_id"].tolist() == stored["token_id"].tolist()


def test_the_cosines_with_the_shipped_directions_match(demo_pair, result):
    shipped = [(label, d) for label, d in study_directions(demo_pair) if label.endswith("(shipped)")]
    ours = dif.cosines(result.difference, shipped)
    stored = result.cosines[result.cosines["direction"].str.endswith("(shipped)")]
    assert len(ours) and len(ours) == len(stored)
    merged = ours.merge(stored, on=["layer", "direction"])
    assert len(merged) == len(ours) and np.allclose(merged["cosine_x"], merged["cosine_y"], atol=1e-5)
