"""The knowledge study's fast path (trace_all on the resumed engine) against today's (trace_item, cross_item), the
partial results it hands to the page, and the benchmark's floor, on a tiny pair (one demo-pair check)."""
import pandas as pd
import pytest
from numeric import EPS, assert_close, logit_tolerance
from tiny import save_tiny_pair

import analyses.knowledge as kn
from analyses.knowledge.partial import partial_chart
from bench.knowledge import floor
from steering import load_pair

FACTS = pd.DataFrame({"subject": ["w3 w4", "w5", "w6 w7 w8", "w9"],
                      "prompt": ["the w3 w4 is a", "the cat w5 is a", "w6 w7 w8 is the", "a w9 dog is"],
                      "object": [" dog", " true", " cat", " false"]})
SMALL = kn.Config(n_items=2, n_screen=4, n_samples=2, top_k=200, min_gap=1e-6, batch_size=16, window=2,
                  noise_scale=3.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("kn-speed-pair"))
    return load_pair(base=base, post=post)


class Partials:
    """A progress callback that keeps the partial results handed to it."""

    def __init__(self):
        self.seen = []

    def __call__(self, fraction: float, message: str) -> None:
        pass

    def partial(self, key, value) -> None:
        self.seen.append((key, value))


def _assert_same(fast: kn.Result, ref: kn.Result, atol: float) -> None:
    for name in ("kept", "grids", "cross", "averages", "cross_averages", "recovery", "peaks"):
        a, b = getattr(fast, name), getattr(ref, name)
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0, name
        numeric = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
        pd.testing.assert_frame_equal(a.drop(columns=numeric), b.drop(columns=numeric), check_dtype=False)
        for c in numeric:
            assert (a[c] - b[c]).abs().max() < atol, (name, c)


@pytest.mark.numeric
def test_fast_path_equals_the_reference(pair) -> None:
    progress = Partials()
    fast = kn.trace_items(pair, FACTS, SMALL, progress, require_kept=False)
    ref = kn.trace_items(pair, FACTS, SMALL, require_kept=False, reference=True)
    _assert_same(fast, ref, atol=1e-5)
    assert (fast.grids["score"] - ref.grids["score"]).abs().max() < 1e-7
    # one partial table per traced item, each the grids so far, the last one the final table
    assert [k for k, _ in progress.seen] == ["grids"] * fast.n_traced
    assert [v["item"].nunique() for _, v in progress.seen] == list(range(1, fast.n_traced + 1))
    pd.testing.assert_frame_equal(progress.seen[-1][1], fast.grids)


@pytest.mark.numeric
def test_fast_path_equals_the_reference_in_float64(tmp_path) -> None:
    """In float64 the reduction order no longer shows: the fast path and the reference agree to the float32 cast of
    the logits the readout applies (half an ulp of a probability <= 1: ε/2), on any machine."""
    base, post = save_tiny_pair(tmp_path)
    pair = load_pair(base=base, post=post)
    for model in pair.models().values():
        model.double()
    fast = kn.trace_items(pair, FACTS, SMALL, require_kept=False)
    ref = kn.trace_items(pair, FACTS, SMALL, require_kept=False, reference=True)
    for name in ("grids", "cross"):
        assert_close(getattr(fast, name)["score"], getattr(ref, name)["score"], EPS, name)


@pytest.mark.numeric
def test_paired_fast_path_equals_the_reference(pair) -> None:
    frame = pd.DataFrame({"subject": ["w3", "w5"], "corrupt_subject": ["w4", "w6"], "object": ["dog", "cat"],
                          "true_statement": ["the w3 is a dog .", "the w5 is a cat ."],
                          "false_statement": ["the w4 is a dog .", "the w6 is a cat ."]})
    config = kn.Config(corruption="paired", n_items=2, n_screen=2, n_shots=0, answers="true,false", min_gap=1e-6,
                       window=2, batch_size=32, components="resid,attn")
    fast = kn.trace_items(pair, frame, config, require_kept=False)
    ref = kn.trace_items(pair, frame, config, require_kept=False, reference=True)
    _assert_same(fast, ref, atol=1e-5)


def test_partial_chart_draws_the_latest_fact_only_for_grids(pair) -> None:
    progress = Partials()
    kn.trace_items(pair, FACTS, SMALL, progress, require_kept=False)
    key, table = progress.seen[-1]
    chart = partial_chart(key, table)
    spec = chart.to_dict()
    assert f"item {int(table['item'].iloc[-1])}" in str(spec["title"])
    assert partial_chart("other", table) is None and partial_chart("grids", table.iloc[:0]) is None
    assert kn.STUDY.partial_chart is partial_chart


def test_floor_runs_and_is_below_the_run(pair) -> None:
    config = kn.Config(n_items=1, n_screen=4, n_samples=2, top_k=200, min_gap=1e-6, window=2, noise_scale=3.0)
    seconds = floor(pair, config, FACTS)
    assert 0 < seconds < 60


@pytest.mark.demo
@pytest.mark.numeric
def test_demo_fact_fast_path_equals_the_reference() -> None:
    demo = load_pair("demo")
    fact = kn.default_data(demo, kn.Config()).head(1)
    # the residual stream and attention (the MLP grid runs the same engine as the residual one; tiny models test
    # all three): Gemma's sliding-window layers and the resumed KV cache are what a real model adds
    config = kn.Config(n_items=1, n_screen=1, n_samples=1, components="resid,attn")
    fast = kn.trace_items(demo, fact, config, require_kept=False)
    ref = kn.trace_items(demo, fact, config, require_kept=False, reference=True)
    # the two paths sum in different orders (other batch shapes, resumed passes): each score, a probability p,
    # moves by up to p·2Δz with Δz the logits' tolerance (tests/numeric.py)
    tol = 2 * logit_tolerance(demo.base, demo.tokenizer)
    for table in (fast.grids, fast.cross):
        assert table["score"].abs().max() <= 1  # a probability, or a difference of two
    assert_close(fast.grids["score"], ref.grids["score"], tol * fast.grids["score"].abs().max(), "grids")
    assert_close(fast.cross["score"], ref.cross["score"], tol * fast.cross["score"].abs().max(), "cross")
