"""Refusal study on tiny random models: the (layer, position) grid, both refusal scores, ablation and addition,
selection filters, the transfer table, the stored result, the headline and the CLI; one acceptance test on the
demo pair (small subsets)."""
import json
import math
from dataclasses import fields, replace

import pandas as pd
import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from analyses.cli import study_main
from analyses.refusal import (STUDY, Config, Result, SelectedDirection, candidate_norms, phrases_setting, run, split_lists,
                              steering_of)
from analyses.refusal.evaluate import intervention_for
from analyses.refusal.scores import (generate_scored, last_logits, post_instruction_positions, refusal_flags,
                                     refusal_log_odds, refusal_token_ids)
from analyses.refusal.selection import (addition_vector, apply_filters, candidate_directions, kept_layers,
                                        score_candidates, select)
from analyses.store import ResultStore, read_result, result_key, run_cached, write_result
from steering import load_pair
from steering.directions import Direction, DirectionInfo
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
    """The study on the tiny pair, stored where a CLI run with PLAYGROUND_CACHE=root finds it."""
    root = tmp_path_factory.mktemp("rf-cache")
    stored = run_cached(STUDY, tiny_pair[0], TINY, data=split_lists(HARMFUL, HARMLESS),
                        store=ResultStore(root / "results"))
    return stored.result, root


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
    vectors = torch.zeros(3, 32)
    vectors[2] = unit
    info = DirectionInfo(model="tiny", dataset="test", dataset_hash="x", position=-1)
    source = target = SelectedDirection(Direction(vectors, info), 2, torch.ones(3, 1) * 50.0, torch.randn(3, 32))
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
    assert torch.allclose(proj[:, -2:], (target.harmless_mean[2] @ u).expand(3, 2), atol=1e-4)
    assert (proj[:, :-2] - (target.harmless_mean[2] @ u)).abs().max() > 1e-2  # earlier tokens left alone
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


@pytest.mark.parametrize("bad, match", [({"ablation": "zero"}, "affine"), ({"n_val": 0}, "n_val"),
                                        ({"n_test": 0}, "n_test"), ({"prune_layer_fraction": 1.0}, "prune"),
                                        ({"positions": (1,)}, "offsets")])
def test_bad_settings_are_refused_before_any_work(tiny_pair, monkeypatch, bad, match):
    import analyses.refusal.compute as compute

    monkeypatch.setattr(compute, "candidate_directions", lambda *a, **k: pytest.fail("ran before checking"))
    with pytest.raises(InvalidInputError, match=match):
        run(tiny_pair[0], Config(**bad), data=split_lists(HARMFUL, HARMLESS))


def test_uploaded_lists_are_split_and_bad_ones_refused():
    data = split_lists(HARMFUL, HARMLESS)
    assert [len(data.get("harmful", s)) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not set(data.get("harmful", "train")) & set(data.get("harmful", "test"))
    with pytest.raises(InvalidInputError, match="at least 5"):
        split_lists(HARMFUL[:3], HARMLESS)


def test_the_default_phrase_list_spelt_out_finds_the_same_stored_result(tiny_pair):
    from steering.judging import refusal_phrases

    spelt = Config(phrases=phrases_setting(["  " + p.upper() for p in refusal_phrases()] + [""]))
    data = STUDY.data_hash(STUDY.default_data(tiny_pair[0], spelt))
    assert result_key(STUDY, tiny_pair[0], spelt, data) == result_key(STUDY, tiny_pair[0], Config(), data)
    assert phrases_setting(["No way", "nope "]) == ("no way", "nope")


def test_directions_add_and_ablate_what_the_study_did(tiny_pair, tiny_result):
    result = tiny_result[0]
    assert set(result.directions) == set(result.harmless_means) == {"base", "post"}
    assert set(result.candidate_directions) == {f"{r}@{p}" for r in ("base", "post") for p in result.positions}
    for role, selected in steering_of(result).items():
        direction = result.directions[role]
        layer, p = selected.layer, result.positions.index(selected.position)
        candidates = result.candidate_directions[f"{role}@{selected.position}"]
        assert torch.equal(direction.vectors, candidates.vectors)
        assert torch.equal(direction.resid_norms, candidate_norms(result, role)[:, p])
        study = addition_vector(selected.vector, float(candidate_norms(result, role)[layer, p]), 0.1)
        assert torch.allclose(direction.steering_vectors([layer], 0.1)[layer], study)
        assert direction.info.model == tiny_pair[0].model_id(role) and direction.info.dataset == "refusal:uploaded"
        assert (layer, selected.position) == tuple(result.selected.set_index("model").loc[role, ["layer", "position"]])
        assert result.harmless_means[role].shape == (3, 32) and candidate_norms(result, role).shape == (3, 2)


def _same_result(a: Result, b: Result) -> None:
    for f in fields(Result):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y)
        elif f.name in ("directions", "candidate_directions"):
            assert x.keys() == y.keys()
            for key in x:
                assert torch.equal(x[key].vectors, y[key].vectors) and x[key].info == y[key].info
                assert torch.equal(x[key].resid_norms, y[key].resid_norms)
        elif isinstance(x, dict) and x and isinstance(next(iter(x.values())), torch.Tensor):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
        else:
            assert x == y, f.name


def test_result_survives_the_store(tiny_result, tmp_path):
    result = tiny_result[0]
    write_result(result, tmp_path / "r", {"study": "refusal", "version": STUDY.version})
    _same_result(read_result(tmp_path / "r", STUDY).result, result)


def test_headline_is_the_selected_cell_and_the_transfer_rates(tiny_result):
    result = tiny_result[0]
    head = STUDY.headline(result)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in head.values())
    scores = result.scores.set_index(["model", "direction_from", "intervention"])
    for row in result.selected.itertuples():
        m, other = row.model, "post" if row.model == "base" else "base"
        assert (head[f"selected_layer/{m}"], head[f"selected_position/{m}"]) == (row.layer, row.position)
        assert head[f"selected_kl/{m}"] == pytest.approx(row.kl)
        want = {"harmful_unsteered": (m, "none", "none", "harmful"), "harmless_unsteered": (m, "none", "none",
                "harmless"), "harmful_ablated_own": (m, m, "ablate", "harmful"),
                "harmful_ablated_transferred": (m, other, "ablate", "harmful"),
                "harmless_added_own": (m, m, "add", "harmless"),
                "harmless_added_transferred": (m, other, "add", "harmless")}
        for name, (model, source, intervention, prompts) in want.items():
            rows = scores.loc[[(model, source, intervention)]]
            assert head[f"refusal_rate_{name}/{m}"] == rows[rows.prompts == prompts].refusal_rate.iloc[0], name
    assert len(head) == 2 * (3 + 6)
    assert set(STUDY.charts(result)) == {"refusal_rate", "refusal_score", "candidates", "cosine"}


def test_cli_writes_tables_charts_and_directions(tiny_pair, tiny_result, tmp_path, monkeypatch, capsys):
    _, base, post = tiny_pair
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tiny_result[1]))  # the fixture's run is found in the store
    (tmp_path / "h.txt").write_text("\n".join(HARMFUL))
    (tmp_path / "n.csv").write_text("prompt\n" + "\n".join(HARMLESS))
    out = tmp_path / "out"
    args = ["--base", base, "--post", post, "--out", str(out)]
    code = study_main("refusal", [*args, "--harmful", str(tmp_path / "h.txt"), "--harmless", str(tmp_path / "n.csv"),
                                  "--refusal-tokens", "w1,w2", "--n-val", "2", "--n-test", "2", "--max-new-tokens",
                                  "3", "--positions=-2,-1", "--layer-step", "2"])
    assert code == 0
    for name in ("scores.csv", "candidates.csv", "selected.csv", "generations.csv", "cosine.csv", "summary.json",
                 "headline.json", "refusal_rate.html", "candidates.html", "cosine.html"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refusal_tokens"] == ["w1", "w2"] and "directions" not in summary  # tensors go to files
    assert json.loads((out / "headline.json").read_text()) == pytest.approx(STUDY.headline(tiny_result[0]))
    for role in ("base", "post"):
        saved = Direction.load(out / f"refusal_directions_{role}.safetensors")
        assert torch.equal(saved.vectors, tiny_result[0].directions[role].vectors)
        assert saved.info.dataset == "refusal:uploaded"
    printed = capsys.readouterr()
    assert "backward (post→base)" in printed.out and "difference in means" not in printed.out  # found, not computed
    assert study_main("refusal", [*args, "--refusal-tokens", "nope"]) == 2
    assert study_main("refusal", [*args, "--harmful", str(tmp_path / "h.txt")]) == 2
    assert "--harmless" in capsys.readouterr().err


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
    vectors = acts[0][:, :, p].mean(0) - acts[1][:, :, p].mean(0)
    direction = Direction(vectors, DirectionInfo(model="demo/post", dataset="refusal:built-in", dataset_hash="",
                                                 position=-1))
    source = target = SelectedDirection(direction, layer, torch.cat(acts).norm(dim=-1).mean(0),
                                        acts[1].mean(dim=(0, 2)))
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


def test_the_work_measure_counts_the_passes_a_run_makes(tiny_pair):
    pair, data = tiny_pair[0], split_lists(HARMFUL, HARMLESS)
    base = STUDY.work(pair, TINY, data)
    fewer_val = STUDY.work(pair, replace(TINY, n_val=1), data)  # the tiny val split has two prompts a side
    every_layer = STUDY.work(pair, replace(TINY, layer_step=1), data)
    assert fewer_val < base < every_layer
    with pytest.raises(InvalidInputError):
        STUDY.work(pair, replace(TINY, n_val=0), data)
