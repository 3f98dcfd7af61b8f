"""Refusal study on tiny random models: the (layer, position) grid, both refusal scores, ablation and addition,
selection filters, the transfer table and the CLI; one acceptance test on the demo pair (small subsets)."""
import json

import pandas as pd
import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from analyses.common import ResultCache
from analyses.refusal import Config, direction_file, run
from analyses.refusal_cli import main
from analyses.refusal_data import split_lists
from analyses.refusal_eval import intervention_for
from analyses.refusal_scores import (generate_scored, last_logits, post_instruction_positions, refusal_flags,
                                     refusal_log_odds, refusal_token_ids)
from analyses.refusal_select import (addition_vector, apply_filters, candidate_directions, kept_layers,
                                     score_candidates, select)
from steering import load_pair
from steering.directions import Direction
from steering.errors import InvalidInputError
from steering.extraction import collect_residuals
from steering.generation import format_prompts
from steering.interventions import record

HARMFUL = [f"w{i} w{i + 1} the cat" for i in range(10)]
HARMLESS = [f"w{i + 40} w{i + 41} a dog" for i in range(10)]
TINY = Config(refusal_tokens=("w1", "w2"), n_val=2, n_test=2, max_new_tokens=3, positions=(-2, -1), layer_step=2)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    return model, tok


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("rf-pair"))
    return load_pair(base=base, post=post), base, post


@pytest.fixture(scope="module")
def tiny_result(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("rf-cache")
    result = run(tiny_pair[0], TINY, split_lists(HARMFUL, HARMLESS), cache=ResultCache("refusal", root / "results"))
    return result, root


def test_post_instruction_positions_are_the_templates_tokens_after_the_instruction(tiny):
    _, tok = tiny
    # the tiny template ends '<end_of_turn>\n<start_of_turn>model\n'; its word-level tokenizer drops newlines
    assert post_instruction_positions(tok) == (-3, -2, -1)


def test_refusal_tokens_from_phrases_or_given(tiny):
    _, tok = tiny
    with pytest.raises(InvalidInputError, match="vocabulary"):
        refusal_token_ids(tok)  # "I", "Sorry"... are not words of the tiny vocabulary
    assert refusal_token_ids(tok, phrases=["w1 w2 w3", "w7"]) == sorted(tok.convert_tokens_to_ids(["w1", "w7"]))
    assert refusal_token_ids(tok, ("w2",)) == [tok.convert_tokens_to_ids("w2")]


def test_log_odds_score_is_log_p_over_one_minus_p():
    logprobs = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]))
    got = refusal_log_odds(logprobs, [0, 1])
    assert torch.allclose(got, torch.tensor([0.0, torch.log(torch.tensor(0.8 / 0.2))]), atol=1e-5)


def test_generation_score_matches_phrases_at_the_start():
    phrases = ("i cannot", "sorry")
    assert refusal_flags(["I cannot help.", " Sorry!", "Sure, I cannot wait", "ok"], phrases) == [
        True, True, False, False]


def test_candidate_grid_is_difference_in_means_per_layer_and_position(tiny):
    model, tok = tiny
    h, n = format_prompts(tok, HARMFUL[:3]), format_prompts(tok, HARMLESS[:3])
    diffs, norms, means = candidate_directions(model, tok, h, n, (-3, -1))
    assert diffs.shape == (3, 2, 32) and norms.shape == (3, 2) and means.shape == (3, 32)
    acts_h, acts_n = (collect_residuals(model, tok, p, positions=(-3, -1)) for p in (h, n))
    assert torch.allclose(diffs, acts_h.mean(0) - acts_n.mean(0), atol=1e-5)
    assert torch.allclose(means, acts_n.mean(dim=(0, 2)), atol=1e-5)
    ids = refusal_token_ids(tok, ("w1",))
    with pytest.raises(InvalidInputError, match="harmless"):
        score_candidates(model, tok, diffs, norms, (-3, -1), [2], h[:2], n[:2], ids, alpha=1.0)
    table = score_candidates(model, tok, diffs, norms, (-3, -1), [0, 2], h[:2], n[:2], ids, alpha=1.0,
                             harmless_mean=means)
    assert sorted(zip(table.layer, table.position)) == [(0, -3), (0, -1), (2, -3), (2, -1)]
    assert table[table.layer == 0].ablation_score.isna().all()  # layer 0: the template tokens embed the same
    assert table[table.layer == 2][["ablation_score", "addition_score", "kl"]].notna().all().all()
    assert (table.kl.dropna() >= -1e-6).all()


def test_ablation_removes_the_direction_and_addition_raises_the_refusal_score(tiny):
    model, tok = tiny
    texts = format_prompts(tok, HARMLESS[:3])
    ids = refusal_token_ids(tok, ("w1",))
    # the unembedding row of the refusal token, pushed into the last layer's input, must raise its log-odds
    unit = model.get_output_embeddings().weight[ids[0]].detach()
    source = {"vector": unit, "layer": 2, "position": -1}
    target = {"norms": torch.ones(3, 1) * 50.0, "harmless_mean": torch.randn(3, 32)}
    before = refusal_log_odds(last_logits(model, tok, texts), ids)
    after = refusal_log_odds(last_logits(model, tok, texts, intervention=intervention_for(
        model, "add", source, target, (-1,), 1.0)), ids)
    assert (after > before + 1.0).all()
    u = unit / unit.norm()
    with intervention_for(model, "ablate", source, target, (-1,), 1.0, "project")(), \
            record(model, ["resid_pre.2"], "all") as rec:
        last_logits(model, tok, texts)
    assert (rec.get("resid_pre.2") @ u).abs().max() < 1e-3
    with intervention_for(model, "ablate", source, target, (-2, -1), 1.0, "affine")(), \
            record(model, ["resid_pre.2"], "all") as rec:  # ACE: the harmless mean along u, from offset -2 on
        last_logits(model, tok, texts)
    proj = rec.get("resid_pre.2") @ u
    assert torch.allclose(proj[:, -2:], (target["harmless_mean"][2] @ u).expand(3, 2), atol=1e-4)
    assert (proj[:, :-2] - (target["harmless_mean"][2] @ u)).abs().max() > 1e-2  # earlier tokens left alone
    replies, scores = generate_scored(model, tok, texts, ids, max_new_tokens=2)
    assert len(replies) == 3 and torch.allclose(torch.tensor(scores), before, atol=1e-4)


def test_filters_and_selection_follow_arditi():
    table = pd.DataFrame({"layer": [0, 1, 2, 4], "position": [-1] * 4, "ablation_score": [-5.0, -3.0, -2.0, -9.0],
                          "addition_score": [1.0, 2.0, -1.0, 3.0], "kl": [0.5, 0.05, 0.01, 0.0]})
    assert kept_layers(5, 0.2) == [0, 1, 2, 3]
    filtered = apply_filters(table, 5, prune_layer_fraction=0.2, max_kl=0.1, min_addition_score=0.0)
    assert filtered["filter"].tolist() == ["KL on harmless > 0.1", "kept", "addition does not induce refusal",
                                           "in the last 20% of layers"]
    best, passed = select(filtered)
    assert (best.layer, passed) == (1, True)
    none_kept = apply_filters(table, 5, prune_layer_fraction=0.2, max_kl=0.01, min_addition_score=0.0)
    assert (none_kept["filter"] != "kept").all()
    best, passed = select(none_kept, 0.01)
    assert (best.layer, passed) == (1, False)  # lowest ablation score with KL < 10 * max_kl, outside the pruned
    best, passed = select(none_kept, 0.0)
    assert (best.layer, passed) == (2, False)  # nothing that gentle: the lowest KL


def test_transfer_table_has_every_model_source_and_intervention(tiny_result):
    result, _ = tiny_result
    got = set(zip(result.scores.model, result.scores.direction_from, result.scores.intervention))
    want = {(m, "none", "none") for m in ("base", "post")} | {
        (m, s, i) for m in ("base", "post") for s in ("base", "post") for i in ("ablate", "add")}
    assert got == want
    labels = dict(zip(zip(result.scores.model, result.scores.direction_from), result.scores.transfer))
    assert labels["post", "base"] == "forward (base→post)" and labels["base", "post"] == "backward (post→base)"
    assert labels["base", "base"] == "own" and (result.scores.n == 2).all()
    assert ((0 <= result.scores.refusal_rate) & (result.scores.refusal_rate <= 1)).all()
    assert len(result.cosine) == 3 * 2 and result.cosine.cosine.between(-1.001, 1.001).all()
    assert set(result.selected.model) == {"base", "post"} and len(result.candidates) == 2 * 2 * 2


def test_unknown_ablation_is_refused(tiny_pair, tmp_path):
    with pytest.raises(InvalidInputError, match="affine"):
        run(tiny_pair[0], Config(ablation="zero"), split_lists(HARMFUL, HARMLESS),
            cache=ResultCache("refusal", tmp_path))


def test_uploaded_lists_are_split_and_bad_ones_refused():
    data = split_lists(HARMFUL, HARMLESS)
    assert [len(data.get("harmful", s)) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not set(data.get("harmful", "train")) & set(data.get("harmful", "test"))
    with pytest.raises(InvalidInputError, match="at least 5"):
        split_lists(HARMFUL[:3], HARMLESS)


def test_the_default_phrase_list_spelt_out_finds_the_same_cached_result(tiny_pair, tiny_result, monkeypatch):
    import analyses.refusal as rf
    from steering.judging import refusal_phrases

    monkeypatch.setattr(rf, "compute", lambda *a: pytest.fail("computed again instead of using the cache"))
    spelt = Config(**{**TINY.__dict__, "phrases": refusal_phrases()})
    again = run(tiny_pair[0], spelt, split_lists(HARMFUL, HARMLESS),
                cache=ResultCache("refusal", tiny_result[1] / "results"))
    assert again.scores.equals(tiny_result[0].scores)


def test_direction_file_adds_and_ablates_what_the_study_did(tiny_result):
    result = tiny_result[0]
    data = split_lists(HARMFUL, HARMLESS)
    for role, entry in result.directions.items():
        direction = direction_file(result, role, f"tiny/{role}", data)
        layer, p = entry["layer"], result.positions.index(entry["position"])
        assert torch.equal(direction.at(layer), entry["vector"])
        study = addition_vector(entry["vector"], float(entry["norms"][layer, p]), 0.1)
        assert torch.allclose(direction.steering_vectors([layer], 0.1)[layer], study)
        assert direction.info.model == f"tiny/{role}" and direction.info.position == entry["position"]
    with pytest.raises(InvalidInputError, match="No refusal direction for 'chat'"):
        direction_file(result, "chat", "x", data)


def test_cli_writes_tables_and_charts(tiny_pair, tiny_result, tmp_path, monkeypatch, capsys):
    _, base, post = tiny_pair
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tiny_result[1]))  # the fixture's run is found in the cache
    (tmp_path / "h.txt").write_text("\n".join(HARMFUL))
    (tmp_path / "n.csv").write_text("prompt\n" + "\n".join(HARMLESS))
    out = tmp_path / "out"
    code = main(["--base", base, "--post", post, "--out", str(out), "--harmful", str(tmp_path / "h.txt"),
                 "--harmless", str(tmp_path / "n.csv"), "--refusal-tokens", "w1,w2", "--n-val", "2", "--n-test", "2",
                 "--max-new-tokens", "3", "--positions=-2,-1", "--layer-step", "2"])
    assert code == 0
    for name in ("scores.csv", "candidates.csv", "selected.csv", "generations.csv", "cosine.csv", "summary.json",
                 "refusal_rate.html", "candidates.html", "cosine.html"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refusal_tokens"] == ["w1", "w2"] and "directions" not in summary  # tensors go to files
    for role in ("base", "post"):
        saved = Direction.load(out / f"direction_{role}.safetensors")
        assert saved.n_layers == tiny_result[0].directions[role]["norms"].shape[0]
        assert saved.info.dataset == "refusal:uploaded"
    assert "backward (post→base)" in capsys.readouterr().out
    assert main(["--base", base, "--post", post, "--out", str(out), "--refusal-tokens", "nope"]) == 2


@pytest.mark.demo
def test_demo_post_model_refuses_and_its_direction_ablates_and_induces_refusal():
    """The study's acceptance on a few demo prompts, with its default (affine) ablation at the cell the full run
    selects for the post-trained model (layer 12, the template's last token; README), from the train split."""
    from steering.refusal_data import refusal_study_split

    pair = load_pair("demo")
    tok, model = pair.tokenizer, pair.post
    positions = post_instruction_positions(tok)
    layer, p = 12, positions.index(-1)
    train = [format_prompts(tok, refusal_study_split(f, "train")) for f in ("harmful.txt", "harmless.txt")]
    acts = [collect_residuals(model, tok, t, positions=tuple(positions)) for t in train]  # [n, layers, positions, d]
    source = {"vector": acts[0][:, layer, p].mean(0) - acts[1][:, layer, p].mean(0), "layer": layer, "position": -1}
    target = {"norms": torch.cat(acts).norm(dim=-1).mean(0), "harmless_mean": acts[1].mean(dim=(0, 2))}
    ids = refusal_token_ids(tok)
    harmful = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:4])
    harmless = format_prompts(tok, refusal_study_split("harmless.txt", "test")[:6])

    def rate(texts, mode):
        replies, _ = generate_scored(model, tok, texts, ids, max_new_tokens=5, intervention=intervention_for(
            model, mode, source, target, positions, 0.1, "affine"))
        return sum(refusal_flags(replies)) / len(replies)

    refuses = rate(harmful, "none")
    assert refuses >= 0.5 and rate(harmful, "ablate") <= refuses / 2
    assert rate(harmless, "add") > rate(harmless, "none")
