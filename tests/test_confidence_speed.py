"""The confidence study's fast last-layer ablation (LastLayerAblation: no unembedding per neuron) against today's
path (ablate_one, the reference), on tiny models of the architectures with and without a post-MLP norm, a final
LayerNorm with a bias, and a logit softcap; its fallback; partial results; the layer named as typed."""
import pandas as pd
import pytest
import torch
from numeric import assert_close, forward_tolerance, logit_scale
from tiny import tiny_model, tiny_tokenizer

from analyses.confidence import Config, STUDY, partial_chart, run
from analyses.confidence import ablation as abl
from steering import InvalidInputError
from steering.model_view import ModelView
from steering.neurons import AffineNorm, LastLayerAblation

TEXTS = ["the cat is a dog .", "w1 w2 w3 the dog is true .", "a cat is false . w4 w5", "w6 w7 w8 w9 the cat .",
         "w10 w11 the", "true false w12 w13 w14 w15 w16 ."]
pytestmark = pytest.mark.numeric  # the fast path against its reference


def ablation_tolerance(model, tokenizer, clean) -> float:
    """How far the fast and the reference ablation effects may be apart: both share the clean run up to the last
    layer, so only one block and the unembedding sum in other orders (Δz = forward_tolerance over 1 block); an
    effect is a mean difference of entropies (each off by 2Δz (1 + H)) or losses (-log p, off by 2Δz)."""
    dz = forward_tolerance(model, logit_scale(model, tokenizer), blocks=1)
    size = 1 + max(float(clean.stats["entropy"].max()), float(clean.stats["loss"].max()))
    return 4 * dz * size


STRONG = 5  # a neuron whose output weight is made large, so its ablation moves entropy and loss a lot


def _setup(model_type: str, seed: int = 1):
    model, tok = tiny_model(model_type, seed=seed), tiny_tokenizer()
    view = ModelView.of(model)
    layer = view.n_layers - 1
    with torch.no_grad():
        weight = view.mlp_down(layer).weight
        (weight[STRONG] if view.arch.mlp_down_is_conv1d else weight[:, STRONG]).mul_(20)
    batches = abl.text_batches(tok, TEXTS, 200, 4)  # two batches, the second padded
    return model, batches, layer, abl.clean_run(model, batches, layer)


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gemma2", "gpt2"])
def test_fast_ablation_matches_the_reference(model_type):
    model, batches, layer, clean = _setup(model_type)
    groups = {"candidate": [STRONG, 0], "random": [17, 40]}
    fast = abl.ablation_table(model, batches, layer, groups, clean, lambda d, t: None)
    reference = abl.ablation_table(model, batches, layer, groups, clean, lambda d, t: None, fast=False)
    assert abl._last_layer(model, batches, layer, clean) is not None  # the fast path was taken
    columns = [c for c in fast.columns if c.startswith("d_")]
    tol = ablation_tolerance(model, tiny_tokenizer(), clean)
    assert_close(fast[columns], reference[columns], tol, "effects")
    strong = fast[fast["neuron"] == STRONG].iloc[0]
    # effects several times the tolerance, so a wrong term would show (measured: 4e-4..5e-2)
    assert min(abs(strong[c]) for c in ("d_entropy_total", "d_loss_direct", "d_entropy_via_norm")) > 2 * tol


def test_no_unembedding_per_neuron():
    model, batches, layer, clean = _setup("gemma3_text")
    view = ModelView.of(model)
    rows = []
    handle = view.unembedding.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[:-1].numel()))
    try:
        abl.ablation_table(model, batches, layer, {"candidate": list(range(8))}, clean, lambda d, t: None)
        fast_rows = sum(rows)
        rows.clear()
        abl.ablation_table(model, batches, layer, {"candidate": list(range(8))}, clean, lambda d, t: None,
                           fast=False)
    finally:
        handle.remove()
    n_tokens = len(clean.stats["loss"])
    assert fast_rows < n_tokens  # a few rows to check the basis, none per neuron
    assert sum(rows) >= 8 * n_tokens  # the reference unembeds every token for every neuron


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
def test_affine_norm_reproduces_the_modules(model_type):
    view = ModelView.of(tiny_model(model_type))
    with torch.no_grad():
        for p in view.final_norm.parameters():
            p.normal_()
    x = torch.randn(3, 5, view.d_model) * 4
    norm = AffineNorm(view, view.final_norm)
    assert torch.allclose(norm(x), view.final_norm(x), atol=1e-5) and norm.matches(x)
    post = view.mlp_post_norm(view.n_layers - 1)
    assert (post is None) == (model_type != "gemma3_text")


def test_a_norm_the_algebra_does_not_reproduce_falls_back_to_the_reference():
    model, batches, layer, clean = _setup("llama")
    view = ModelView.of(model)
    handle = view.final_norm.register_forward_hook(lambda m, args, out: out * (1 + out.abs()))  # not affine
    try:
        clean = abl.clean_run(model, batches, layer)
        assert abl._last_layer(model, batches, layer, clean) is None
        table = abl.ablation_table(model, batches, layer, {"candidate": [STRONG]}, clean, lambda d, t: None)
        row = abl.ablate_one(model, batches, layer, STRONG, clean)
    finally:
        handle.remove()
    assert all(table.iloc[0][k] == v for k, v in row.items())


def test_an_inner_layer_takes_the_hooked_reference():
    model, batches, _, _ = _setup("gemma3_text")
    view = ModelView.of(model)
    clean = abl.clean_run(model, batches, 1)
    assert LastLayerAblation.build(view, 1, clean.final_inputs[0][0], clean.acts[0][0]) is None
    table = abl.ablation_table(model, batches, 1, {"random": [3]}, clean, lambda d, t: None)
    row = abl.ablate_one(model, batches, 1, 3, clean)
    assert all(table.iloc[0][k] == v for k, v in row.items())


class Recorder:
    def __init__(self):
        self.partials = []

    def __call__(self, fraction, message):
        pass

    def partial(self, key, value):
        self.partials.append((key, value))


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    from tiny import save_tiny_pair

    from steering import load_pair
    base, post = save_tiny_pair(tmp_path_factory.mktemp("conf-speed"))
    return load_pair(base=base, post=post)


def test_partial_ablation_rows_grow_to_the_final_table(tiny_pair):
    config = Config(null_dims=4, n_candidates=3, n_random=2, max_tokens=40, n_questions=4, batch_size=2)
    recorder = Recorder()
    result = run(tiny_pair, config, data=TEXTS, progress=recorder)
    tables = [v for k, v in recorder.partials if k == "ablation"]
    assert [len(t) for t in tables] == list(range(1, 11))
    pd.testing.assert_frame_equal(tables[-1], result.ablation)
    assert [k for k, _ in recorder.partials].count("neurons") == 2
    assert STUDY.partial_chart is partial_chart
    assert partial_chart("ablation", tables[3]) is not None and partial_chart("neurons", result.neurons) is not None
    assert partial_chart("ablation", tables[0].iloc[:0]) is None and partial_chart("other", tables[0]) is None


@pytest.mark.parametrize("layer", [-99, 9])
def test_a_layer_out_of_range_is_named_as_typed_before_any_work(tiny_pair, monkeypatch, layer):
    monkeypatch.setattr(type(tiny_pair), "models", lambda self: pytest.fail("the models ran"))
    with pytest.raises(InvalidInputError, match=f"MLP layer {layer} is out of range"):
        run(tiny_pair, Config(layer=layer), data=TEXTS)
