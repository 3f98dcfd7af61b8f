"""The refusal study's fast paths against their slow references on tiny random models: candidate scores (a
layer's candidates in one batch, the addition resumed at its layer, the affine ablation on the clean prefix's
KV cache), the partial tables handed out while scoring, and the test split's conditions sharing generate calls;
one check on the demo pair."""
import pandas as pd
import pytest
import torch
from numeric import assert_close, logit_tolerance
from tiny import tiny_model, tiny_tokenizer

from analyses.common import Steps
from analyses.refusal import Config, SelectedDirection
from analyses.refusal.evaluate import evaluate_test, evaluate_test_reference
from analyses.refusal.scores import refusal_token_ids
from analyses.refusal.selection import candidate_directions, score_candidates, score_candidates_reference
from steering.directions import Direction, DirectionInfo
from steering.generation import format_prompts
from steering.tokens import encode

pytestmark = pytest.mark.numeric  # fast paths against their references

HARMFUL = [f"w{i} w{i + 1} the cat" + " w3" * (i % 4) for i in range(10)]
HARMLESS = [f"w{i + 40} w{i + 41} a dog" + " w5" * (i % 3) for i in range(10)]
COLUMNS = ["ablation_score", "addition_score", "kl"]


def _inputs(model_type, positions):
    model, tok = tiny_model(model_type), tiny_tokenizer()
    h, n = format_prompts(tok, HARMFUL), format_prompts(tok, HARMLESS)
    diffs, norms, means = candidate_directions(model, tok, h[:6], n[:6], positions)
    return model, tok, (diffs, norms, positions, [0, 1, 2], h[6:], n[6:], refusal_token_ids(tok, ("w1", "w2"))), means


def _same_scores(fast: pd.DataFrame, slow: pd.DataFrame, model, tok) -> None:
    """The two paths sum in other orders (5-token passes over a cached prefix, per-row projections): log-odds read
    log-probabilities off by up to 2Δz, KL by 4Δz plus 2Δz of its size (Δz: tests/numeric.py)."""
    pd.testing.assert_frame_equal(fast[["layer", "position"]], slow[["layer", "position"]])
    pd.testing.assert_frame_equal(fast[COLUMNS].isna(), slow[COLUMNS].isna())
    dz = logit_tolerance(model, tok)
    for column in ("ablation_score", "addition_score"):
        assert_close(fast[column].dropna(), slow[column].dropna(), 2 * dz, column)
    kl = slow["kl"].dropna()
    assert_close(fast["kl"].dropna(), kl, 4 * dz + 2 * dz * kl.abs().max(), "kl")


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("ablation, batch_size", [("affine", 16), ("affine", 3), ("project", 3)])
def test_fast_candidate_scores_match_the_reference(model_type, ablation, batch_size):
    model, tok, args, means = _inputs(model_type, (-3, -2, -1))
    kw = dict(alpha=0.5, harmless_mean=means, ablation=ablation, batch_size=batch_size)
    fast, slow = score_candidates(model, tok, *args, **kw), score_candidates_reference(model, tok, *args, **kw)
    _same_scores(fast, slow, model, tok)
    assert fast[COLUMNS].notna().any().all() and len(fast) == 9


def test_an_ablation_reaching_the_prompts_start_runs_whole_prompts():
    """Positions from the shortest padded batch's first column on: no clean prefix is left to reuse."""
    tok = tiny_tokenizer()
    shortest = min(encode(tok, format_prompts(tok, p)).input_ids.shape[1] for p in (HARMFUL[6:8], HARMLESS[6:8]))
    model, tok, args, means = _inputs("gemma3_text", (-shortest, -1))
    kw = dict(alpha=0.5, harmless_mean=means, batch_size=2)
    _same_scores(score_candidates(model, tok, *args, **kw), score_candidates_reference(model, tok, *args, **kw),
                 model, tok)


def test_partial_tables_grow_a_layer_at_a_time_to_the_final_table():
    model, tok, args, means = _inputs("llama", (-3, -1))
    seen, counts = [], []
    final = score_candidates(model, tok, *args, alpha=0.5, harmless_mean=means, partial=seen.append,
                             progress=lambda done, total: counts.append((done, total)))
    assert [len(t) for t in seen] == [2, 4, 6] and counts == [(2, 6), (4, 6), (6, 6)]
    pd.testing.assert_frame_equal(seen[-1], final)
    assert list(seen[0].columns) == ["layer", "position", *COLUMNS]


def _selected(model, layer: int, seed: int) -> SelectedDirection:
    g = torch.Generator().manual_seed(seed)
    info = DirectionInfo(model="tiny", dataset="test", dataset_hash="x", position=-1)
    return SelectedDirection(Direction(torch.randn(3, 32, generator=g), info), layer,
                             torch.full((3, 2), 30.0), torch.randn(3, 32, generator=g))


@pytest.mark.parametrize("ablation", ["affine", "project"])
def test_conditions_sharing_generate_calls_match_one_call_per_condition(ablation):
    tok = tiny_tokenizer()
    models = {"base": tiny_model("gemma3_text", seed=1), "post": tiny_model("gemma3_text", seed=2)}
    directions = {"base": _selected(models["base"], 1, 3), "post": _selected(models["post"], 2, 4)}
    texts = {"harmful": format_prompts(tok, HARMFUL[:5]), "harmless": format_prompts(tok, HARMLESS[:4])}
    raw = {"harmful": HARMFUL[:5], "harmless": HARMLESS[:4]}
    config = Config(refusal_tokens=("w1",), max_new_tokens=3, batch_size=2, ablation=ablation, alpha=0.5)
    ids = refusal_token_ids(tok, config.refusal_tokens)
    reports = []
    steps = Steps(lambda fraction, message: reports.append(fraction), {"test base": 1, "test post": 1})
    args = (models, tok, texts, raw, directions, ids, (-2, -1), config)
    fast_scores, fast_gens = evaluate_test(*args, steps)
    slow_scores, slow_gens = evaluate_test_reference(*args, Steps(None, {"test base": 1, "test post": 1}))
    pd.testing.assert_frame_equal(fast_gens.drop(columns="refusal_score"), slow_gens.drop(columns="refusal_score"))
    dz = max(logit_tolerance(m, tok) for m in models.values())  # log-odds: 2Δz (tests/numeric.py)
    assert_close(fast_gens.refusal_score, slow_gens.refusal_score, 2 * dz, "refusal scores")
    pd.testing.assert_frame_equal(fast_scores, slow_scores, atol=2 * dz, rtol=0)
    assert len(fast_gens) == 2 * (3 * 5 + 3 * 4) and reports == sorted(reports) and reports[-1] == pytest.approx(1.0)
    by = fast_scores.set_index(["model", "direction_from", "intervention", "prompts"]).refusal_score
    assert all(abs(by[m, s, "add", "harmless"] - by[m, "none", "none", "harmless"]) > 1e-3
               for m in models for s in directions)  # each block of rows got its own condition


@pytest.mark.demo
@pytest.mark.numeric
def test_demo_fast_candidate_scores_match_the_reference():
    from analyses.refusal import default_data
    from analyses.refusal.compute import _formatted
    from analyses.refusal.scores import post_instruction_positions
    from steering import load_pair

    pair = load_pair("demo")
    tok, model, config = pair.tokenizer, pair.post, Config()
    fmt = _formatted(tok, default_data(pair, config), config)
    positions = post_instruction_positions(tok)
    diffs, norms, means = candidate_directions(model, tok, fmt["harmful", "train"][:16],
                                               fmt["harmless", "train"][:16], positions)
    args = (model, tok, diffs, norms, positions, [0, 6, 12], fmt["harmful", "val"], fmt["harmless", "val"],
            refusal_token_ids(tok))
    kw = dict(alpha=config.alpha, harmless_mean=means, batch_size=config.batch_size)
    # measured on one machine: up to 1.7e-4 apart on scores of size 1-22 (the ablated Gemma amplifies the rounding)
    _same_scores(score_candidates(*args, **kw), score_candidates_reference(*args, **kw), model, tok)


class _Collect:
    """A progress callback that takes partial results, as the page's does."""

    def __init__(self):
        self.fractions, self.partials = [], []

    def __call__(self, fraction, message):
        self.fractions.append(fraction)

    def partial(self, key, value):
        self.partials.append((key, value))


def test_run_hands_out_the_candidates_so_far_and_the_floor_counts_its_candidates(tmp_path):
    from tiny import save_tiny_pair

    from analyses.refusal import STUDY, partial_chart, run, split_lists
    from analyses.refusal.compute import _formatted
    from bench.refusal import _cells, floor
    from steering import load_pair

    base, post = save_tiny_pair(tmp_path)
    pair = load_pair(base=base, post=post)
    config = Config(refusal_tokens=("w1", "w2"), n_val=2, n_test=2, max_new_tokens=2, positions=(-3, -1),
                    layer_step=1)  # every layer: one partial table each
    data, progress = split_lists(HARMFUL, HARMLESS), _Collect()
    result = run(pair, config, data=data, progress=progress)
    tables = [value for key, value in progress.partials if key == "candidates"]
    assert [len(t) for t in tables] == [2, 4, 6, 8, 10, 12] and STUDY.partial_chart is partial_chart
    pd.testing.assert_frame_equal(tables[-1], result.candidates)
    assert partial_chart("candidates", tables[0]) is not None and partial_chart("other", tables[0]) is None
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == 1.0
    scored = result.candidates.dropna(subset=["ablation_score"]).groupby(["model", "layer"]).size()
    fmt = _formatted(pair.tokenizer, data, config)
    for (_, layer), n in scored.items():
        assert _cells(pair.tokenizer, fmt, (-3, -1), layer) == n
    assert _cells(pair.tokenizer, fmt, (-3, -1), 0) == 0 and floor(pair, config, data) > 0
