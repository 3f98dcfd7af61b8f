"""The diffing study and steering.lens on tiny pairs: an identical pair differs nowhere, a planted change is found
where it was planted, the lens's last layer is the model's own output, and bad input is a clear error."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import VOCAB, tiny_model, tiny_tokenizer

from analyses.diffing import STUDY, Config, DiffingData
from analyses.diffing import compute as dc
from analyses.diffing.difference import first_tokens
from steering import InvalidInputError, load_pair
from steering.interventions import add
from steering.lens import is_text_token, logit_lens, top_text_tokens
from steering.model_view import ModelView

ROOT = Path(__file__).resolve().parent.parent
TEXT = "<bos> the cat is a dog . w1 w2 w3 the dog is true . w4 w5 w6 a cat is false ."
PLAIN = tuple(f"the cat is w{i} w{i + 1} w{i + 2} ." for i in range(12))
DATA = DiffingData((("a", TEXT), ("b", "<bos> <start_of_turn>user \n w7 w8 the cat <end_of_turn>")), PLAIN)
SMALL = Config(top_n=4, k=3)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))  # no stored study directions leak in


def pair_of(root: Path, base, post):
    """Two given models saved with the tiny tokenizer and loaded as a pair."""
    folders = []
    for role, model in (("base", base), ("post", post)):
        model.save_pretrained(root / role)
        tiny_tokenizer().save_pretrained(root / role)
        folders.append(str(root / role))
    return load_pair(base=folders[0], post=folders[1])


@pytest.fixture(scope="module")
def identical(tmp_path_factory):
    model = tiny_model("gemma3_text", seed=3)
    return pair_of(tmp_path_factory.mktemp("same"), model, copy.deepcopy(model))


@pytest.fixture(scope="module")
def different(tmp_path_factory):
    return pair_of(tmp_path_factory.mktemp("diff"), tiny_model("llama", 1), tiny_model("llama", 2))


def test_an_identical_pair_has_zero_divergence_and_zero_difference(identical):
    for reading in ("logit_lens", "patchscope"):
        result = STUDY.run(identical, Config(top_n=4, k=3, reading=reading), data=DATA)
        assert np.abs(result.tokens[["kl_post_base", "kl_base_post", "tv"]].to_numpy()).max() < 1e-6
        assert (result.tokens["rank_base"].dropna() == result.tokens["rank_post"].dropna()).all()
        assert float(result.difference.vectors.abs().max()) == 0.0
        assert (result.difference_norms["norm"] == 0).all()
        assert result.difference_tokens.empty  # a zero difference has no reading
        assert np.abs(result.changes["delta"]).max() < 1e-6


def test_every_table_has_its_columns_and_the_headline_is_finite(different):
    result = STUDY.run(different, SMALL, data=DATA)
    assert list(result.tokens.columns) == ["text", "position", "token", "next_token", "kl_post_base",
                                           "kl_base_post", "tv", "rank_base", "rank_post"]
    seq = len(different.tokenizer(TEXT)["input_ids"])
    a = result.tokens[result.tokens["text"] == "a"]
    assert list(a["position"]) == list(range(seq)) and a["rank_base"].isna().sum() == 1  # the last has no next
    assert result.positions["a"] == int(a["kl_post_base"].idxmax())
    layers = ModelView.of(different.base).n_layers
    assert sorted(result.lens["layer"].unique()) == list(range(layers + 1))
    assert result.difference.vectors.shape == (layers, different.d_model)
    assert result.difference.resid_norms.shape == (layers,)
    assert set(result.difference_tokens["kind"]) == {"promoted", "demoted"}
    headline = STUDY.headline(result)
    assert all(np.isfinite(v) for v in headline.values())
    assert headline["max_kl_post_base_a"] == pytest.approx(float(a["kl_post_base"].max()))
    assert set(STUDY.charts(result)) >= {"divergence", "lens_a", "changes_b", "difference_norms"}


def test_a_planted_unembedding_row_tops_the_rose_list_where_the_kl_is(tmp_path):
    base = tiny_model("llama", seed=4)
    assert not base.config.tie_word_embeddings
    ids = tiny_tokenizer()(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = base(ids).logits[0]
        planted = int(logits.mean(0).argmax())  # a token whose logit is mostly positive, so scaling raises it
        post = copy.deepcopy(base)
        ModelView.of(post).unembedding.weight[planted] *= 4.0
    pair = pair_of(tmp_path, base, post)
    result = STUDY.run(pair, SMALL, data=DiffingData((("a", TEXT),), PLAIN))
    rose = result.changes[result.changes["change"] == "rose"]
    assert int(rose.iloc[0]["token_id"]) == planted
    assert float(result.difference.vectors.abs().max()) == 0.0  # the unembedding is outside the residual stream
    with torch.no_grad():
        p_planted = torch.softmax(pair.post(ids).logits[0].float(), -1)[:, planted].numpy()
    kl = result.tokens["kl_post_base"].to_numpy()
    likely = p_planted > np.median(p_planted)
    assert kl[likely].mean() > 2 * kl[~likely].mean()
    assert np.corrcoef(kl, p_planted)[0, 1] > 0.5


def test_a_planted_residual_vector_is_the_difference_and_reads_as_its_token(different):
    view = ModelView.of(different.post)
    token = VOCAB.index("cat")
    gain = view.final_norm.weight.detach()
    vector = 50 * view.unembedding.weight[token].detach() / gain  # after the final norm's gain: along cat's row
    with add(different.post, {1: vector}):
        result = STUDY.run(different, SMALL, data=DATA)
    without = STUDY.run(different, SMALL, data=DATA)
    planted = result.difference.vectors[1] - without.difference.vectors[1]
    assert torch.allclose(planted, vector, atol=1e-3)
    assert torch.allclose(result.difference.vectors[0], without.difference.vectors[0])
    promoted = result.difference_tokens.query("layer == 1 and kind == 'promoted'")
    assert promoted.iloc[0]["token"] == "cat"


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gemma3_text"])
def test_the_lens_at_the_last_layer_is_the_models_own_output(model_type, tmp_path):
    pair = pair_of(tmp_path, tiny_model(model_type, 1), tiny_model(model_type, 2))
    ids = pair.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    position = 6
    table = logit_lens(pair, TEXT, position, top_n=5)
    last = pair.n_layers
    for role, model in pair.models().items():
        with torch.no_grad():
            probs = torch.softmax(model(ids).logits[0, position].float(), -1)
        top = probs.topk(5)
        rows = table[(table["model"] == role) & (table["layer"] == last)].sort_values("rank")
        assert list(rows["token_id"]) == top.indices.tolist()
        assert np.allclose(rows["prob"], top.values.numpy(), atol=1e-5)
    if model_type == "gemma2":
        assert pair.base.config.final_logit_softcapping  # the soft-cap was in play


def test_only_tokens_text_produces_are_listed():
    tok = tiny_tokenizer()
    assert not any(is_text_token(tok, tok.convert_tokens_to_ids(t)) for t in ("<pad>", "<bos>", "<start_of_turn>"))
    assert is_text_token(tok, tok.convert_tokens_to_ids("cat")) and not is_text_token(tok, len(tok) + 3)
    scores = torch.zeros(len(VOCAB) + 4)
    scores[:6] = 10.0  # the control tokens first, then rows past the tokenizer's vocabulary
    scores[len(VOCAB):] = 20.0
    scores[VOCAB.index("dog")] = 5.0
    top = top_text_tokens(scores, tok, 3)
    assert top[0] == (VOCAB.index("dog"), 5.0) and all(is_text_token(tok, i) for i, _ in top)


def test_bad_input_is_a_clear_error(different):
    def error(config=SMALL, data=DATA) -> str:
        with pytest.raises(InvalidInputError) as caught:
            STUDY.run(different, config, data=data)
        return str(caught.value)

    assert "empty" in error(Config(text="   "), data=None)
    assert "longer than the model's context of 128" in error(data=DiffingData((("a", "w1 " * 200),), PLAIN))
    assert "k = 9 is more than the shortest plain text's 7 tokens" in error(Config(k=9))
    assert "Position 40 is outside the text" in error(Config(position=40))
    assert "Unknown reading" in error(Config(reading="crosscoder"))
    with pytest.raises(InvalidInputError, match="more than the shortest"):
        first_tokens(different.tokenizer, ["w1 w2"], 5)


def test_token_ids_past_a_models_vocabulary_are_refused(tmp_path):
    small = tiny_model("llama", 1)
    small.resize_token_embeddings(40)  # the tokenizer's words w40.. and "the", "cat" are past it
    pair = pair_of(tmp_path, small, copy.deepcopy(small))
    with pytest.raises(InvalidInputError, match="token id .* only 40 embedding rows"):
        STUDY.run(pair, SMALL, data=DATA)


def test_a_pair_whose_tokenizers_differ_is_refused(tmp_path, different):
    for role, words in (("a", VOCAB), ("b", VOCAB[:-1] + ["bird"])):
        (tmp_path / role).mkdir()
        (tmp_path / role / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {w: i for i, w in
                                                                                     enumerate(words)}}}))
    with pytest.raises(InvalidInputError, match="different tokenizers"):
        dc._check_vocabularies(tmp_path / "a", tmp_path / "b")
    dc._check_vocabularies(tmp_path / "a", tmp_path / "a")  # the same vocabulary passes
    dc.check_same_vocabulary(different)  # the tiny pair's two folders hold the same tokenizer


def test_the_cli_writes_the_tidy_tables_and_the_direction(different, tmp_path):
    base, post = (str(different.folders[r]) for r in ("base", "post"))
    env = {**os.environ, "PLAYGROUND_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "analyses", "diffing", "--base", base, "--post", post, "--out", str(tmp_path / "o"),
            "--text", "the cat is a dog", "--k", "1", "--top-n", "3"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "o"
    header = (out / "tokens.csv").read_text().splitlines()[0]
    assert header == "text,position,token,next_token,kl_post_base,kl_base_post,tv,rank_base,rank_post"
    assert (out / "lens.csv").read_text().startswith("text,position,layer,model,rank,token,token_id,prob")
    assert (out / "difference_tokens.csv").read_text().startswith("layer,kind,rank,token,token_id,score")
    assert (out / "diffing_difference.safetensors").exists() and (out / "headline.json").exists()
    bad = subprocess.run(argv[:-4] + ["--k", "99"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "k = 99 is more than" in bad.stderr


def test_the_run_reads_only_its_inputs_and_the_cosines_are_read_where_shown(different, monkeypatch):
    """What the store holds for the pair (other studies' directions) is no input of the run, whose key does not
    cover it: the same run gives the same result whatever is stored, and the cosines are read when shown."""
    import analyses.study_directions as sd
    from analyses.diffing import compared_with
    from steering.directions import Direction, DirectionInfo

    empty = STUDY.run(different, SMALL, data=DATA)
    view = ModelView.of(different.base)
    planted = Direction(torch.randn(view.n_layers, view.d_model), DirectionInfo("refusal", "m", "h"),
                        torch.ones(view.n_layers))
    monkeypatch.setattr(sd, "directions_for", lambda pair, *a, **k: [("refusal · directions · post", planted)])
    stored = STUDY.run(different, SMALL, data=DATA)
    for field in ("tokens", "lens", "changes", "difference_norms", "difference_tokens"):
        assert getattr(stored, field).equals(getattr(empty, field)), field
    assert torch.equal(stored.difference.vectors, empty.difference.vectors)
    found = compared_with(stored, different)
    assert list(found["direction"].unique()) == ["refusal · directions · post"]
    assert len(found) == view.n_layers and found["cosine"].between(-1, 1).all()


def test_kl_and_tv_over_a_gemma_sized_vocabulary_match_a_float64_reference():
    """The sums over 262,144 tokens are pairwise (one float32 einsum per row was up to 0.02 nats low at high-KL
    positions). Bound, from float32 logits: each log-probability x - lse is within 2εM of its value (M: the largest
    |logit| plus |lse|; the pairwise log-sum-exp adds log2(n)·ε, n the vocabulary); a KL term p·gap moves by p·4εM
    through both log-probabilities and by 2ε|p·gap| through p and the product, so the terms by 8εM in all (Σp = 1,
    Σ|p·gap| <= 2M), and a pairwise sum of terms whose sizes add up to 2M by log2(n)·ε·2M more. TV = ½Σ|p − q|: each p
    within p·ε(1 + 2M + log2(n)), and its pairwise sum of terms adding up to at most 2 by log2(n)·ε."""
    import math

    from numeric import EPS

    from analyses.diffing.divergence import _measures

    generator = torch.Generator().manual_seed(0)
    vocab, rows = 262_144, 6
    base = torch.randn(rows, vocab, generator=generator) * 3
    post = base + torch.randn(rows, vocab, generator=generator) * 3
    post[:, :50] += 12  # the post model puts its mass where the base puts little, and the other way round
    base[:, 50:100] += 12
    ref_post, ref_base = post.double().log_softmax(-1), base.double().log_softmax(-1)
    gap = ref_post - ref_base
    reference = {"kl_post_base": (ref_post.exp() * gap).sum(-1), "kl_base_post": -(ref_base.exp() * gap).sum(-1),
                 "tv": 0.5 * (ref_post.exp() - ref_base.exp()).abs().sum(-1)}
    assert float(reference["kl_post_base"].min()) > 5  # high KL, where the one-by-one float32 sums were furthest off
    big = max(float(x.abs().max()) + float(x.double().logsumexp(-1).abs().max()) for x in (post, base))
    depth = math.log2(vocab)
    ours = _measures(post.clone().sub_(post.logsumexp(-1, keepdim=True)),
                     base.clone().sub_(base.logsumexp(-1, keepdim=True)))
    kl_tol = EPS * ((8 + 2 * depth) * big + 2 * depth)
    for name, tol in (("kl_post_base", kl_tol), ("kl_base_post", kl_tol), ("tv", EPS * (1 + 2 * big + 2 * depth))):
        error = float((ours[name].double() - reference[name]).abs().max())
        assert error <= tol, (name, error, tol)
