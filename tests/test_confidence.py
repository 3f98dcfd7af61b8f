"""Confidence study: neuron scores from weights, mean ablation, the final norm's frozen scale, calibration."""
import json

import numpy as np
import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from analyses.confidence import ablation as abl
from analyses.confidence import calibration as cal
from analyses.confidence import weights as cw
from analyses.confidence import Config, run
from steering import InvalidInputError, SteeringError, load_pair
from steering.model_view import ModelView
from steering.neurons import (effective_output_weight, effective_unembedding, final_norm_input,
                              frozen_scale_output, mean_ablate, norm_gain)

TEXTS = ["the cat is a dog .", "w1 w2 w3 the dog is true .", "a cat is false . w4 w5", "w6 w7 w8 w9 the cat ."]


def _low_rank_unembedding(vocab=200, d=16, rank=12, seed=0):
    """W_U whose row space has rank 12: the last 4 right singular directions are an exact null space."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, rank, generator=g) @ torch.randn(rank, d, generator=g)


def test_null_space_fraction_is_zero_in_row_space_and_one_in_null_space():
    w_u = _low_rank_unembedding()
    geometry = cw.unembedding_geometry(w_u, chunk=64)
    in_rows = w_u[:5].T  # rows of W_U lie in its row space
    null = geometry.right_vectors[:, -4:] @ torch.randn(4, 3, dtype=torch.float64)
    assert cw.null_space_fraction(geometry, in_rows, 4).max() < 1e-8
    assert cw.null_space_fraction(geometry, null, 4).min() > 1 - 1e-8
    with pytest.raises(InvalidInputError):
        cw.null_space_fraction(geometry, in_rows, 16)


def test_logit_variance_from_the_gram_matrix_is_exact():
    w_u = torch.randn(300, 8, dtype=torch.float64)
    w = torch.randn(8, 5, dtype=torch.float64)
    geometry = cw.unembedding_geometry(w_u, chunk=77)
    direct = (w_u @ w).var(0, unbiased=False)
    assert torch.allclose(cw.logit_variance(geometry, w), direct, rtol=1e-9)
    s = torch.linalg.svdvals(w_u)
    assert torch.allclose(geometry.singular_values, s, rtol=1e-8)


def test_planted_null_space_neuron_is_the_top_candidate():
    w_u = _low_rank_unembedding()
    geometry = cw.unembedding_geometry(w_u)
    w_out = torch.randn(16, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    planted = geometry.right_vectors[:, -1] * 3 * w_out.norm(dim=0).max()  # largest norm, all in the null space
    w_out[:, 17] = planted
    scores = cw.neuron_scores(geometry, w_out, null_dims=4)
    assert cw.candidates(scores, 0.25, 1) == [17]
    assert scores.loc[17, "null_frac"] > 0.999 and scores["null_frac"].drop(17).max() < 0.9


def test_planted_neuron_in_a_tiny_models_unembedding_null_space_is_found():
    model = tiny_model("gemma3_text", seed=3)
    view = ModelView.of(model)
    layer = view.n_layers - 1
    u = torch.nn.functional.normalize(torch.randn(view.d_model, generator=torch.Generator().manual_seed(4)), dim=0)
    with torch.no_grad():  # give the (tied) unembedding an exact null direction u; the final norm's gain is 1
        view.unembedding.weight.sub_(torch.outer(view.unembedding.weight @ u, u))
        w = effective_output_weight(view, layer)
        gain = norm_gain(view.mlp_out(layer), view.d_model)  # Gemma's post-MLP norm scales each output dimension
        view.mlp_down(layer).weight[:, 5] = u * w.norm(dim=0).median() * 1.5 / gain
    geometry = cw.unembedding_geometry(effective_unembedding(view))
    assert abs(geometry.right_vectors[:, -1].float() @ u) > 0.999 and geometry.singular_values[-1] < 1e-4
    scores = cw.neuron_scores(geometry, effective_output_weight(view, layer), null_dims=2)
    assert cw.candidates(scores, 0.25, 3)[0] == 5
    assert scores.loc[5, "null_frac"] > 0.999 and scores["null_frac"].drop(5).max() < 0.5


def test_norm_gain_reads_gemmas_one_plus_weight_and_layernorm_weight():
    view = ModelView.of(tiny_model("gemma3_text"))
    with torch.no_grad():
        view.final_norm.weight.copy_(torch.linspace(-0.5, 2, view.d_model))
    assert torch.allclose(norm_gain(view.final_norm, view.d_model), 1 + torch.linspace(-0.5, 2, view.d_model),
                          atol=1e-5)
    ln = torch.nn.LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(torch.arange(1.0, 7.0))
        ln.bias.fill_(3.0)
    assert torch.allclose(norm_gain(ln, 6), torch.arange(1.0, 7.0), atol=1e-5)


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
def test_mean_ablation_of_a_neuron_with_zero_output_weight_changes_nothing(model_type):
    model, tok = tiny_model(model_type), tiny_tokenizer()
    view = ModelView.of(model)
    layer = view.n_layers - 1
    with torch.no_grad():
        weight = view.mlp_down(layer).weight
        (weight[3] if view.arch.mlp_down_is_conv1d else weight[:, 3]).zero_()
    batches = abl.text_batches(tok, TEXTS, 100, 2)
    clean = abl.clean_run(model, batches, layer)
    row = abl.ablate_one(model, batches, layer, 3, clean)
    assert all(abs(v) < 1e-5 for v in row.values()), row
    moved = abl.ablate_one(model, batches, layer, 4, clean)  # a neuron that does write changes something
    assert abs(moved["d_entropy_total"]) > 1e-6 and abs(moved["d_entropy_direct"]) > 1e-6
    hooked = abl.ablate_one(model, batches, layer, 4, clean, shortcut=False)  # the full forward pass agrees
    assert all(abs(moved[k] - hooked[k]) < 1e-4 for k in moved), (moved, hooked)


def test_mean_ablation_sets_the_activation_to_the_mean():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    means = torch.arange(64, dtype=torch.float32)
    from steering.interventions import record
    batch = abl.text_batches(tok, TEXTS[:2], 100, 2)[0]
    with mean_ablate(model, 1, [2, 9], means), record(model, ["neurons.1"], positions="all") as rec:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    acts = rec.get("neurons.1")
    assert torch.all(acts[..., 2] == 2) and torch.all(acts[..., 9] == 9) and not torch.all(acts[..., 3] == 3)
    with pytest.raises(InvalidInputError):
        with mean_ablate(model, 1, [64], means):
            pass


def test_frozen_scale_with_clean_input_gives_the_clean_output_and_removes_rescaling():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    view = ModelView.of(model)
    batch = abl.text_batches(tok, TEXTS[:2], 100, 2)[0]
    with torch.no_grad(), final_norm_input(model) as store:
        y = view.decoder_stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    x = store[0]
    from steering.neurons import norm_scale
    scale = norm_scale(view.final_norm, x)
    assert torch.allclose(frozen_scale_output(view.final_norm, y, x, scale), y, atol=1e-5)
    # doubling the input: the real norm ignores it, the frozen one doubles its output
    with torch.no_grad():
        y2 = view.final_norm(2 * x)
    assert torch.allclose(frozen_scale_output(view.final_norm, y2, 2 * x, scale), 2 * y, rtol=1e-4, atol=1e-4)
    assert not view.final_norm._forward_pre_hooks  # the recording hook is gone


def test_ece_of_a_perfectly_calibrated_set_is_about_zero_and_of_an_overconfident_one_is_not():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, confidence.size) < confidence
    assert cal.expected_calibration_error(correct, confidence, 10) < 0.01
    assert cal.expected_calibration_error(correct, np.minimum(confidence + 0.3, 1), 10) > 0.2
    bins = cal.reliability(correct, confidence, 10)
    assert len(bins) == 10 and bins["count"].sum() == confidence.size
    assert np.allclose(bins["accuracy"], bins["mean_confidence"], atol=0.02)


def test_question_set_and_answer_tokens():
    questions = cal.question_set(20, seed=1)
    assert len(questions) == 20 and set(questions["set"]) == {"capitals", "cities"}
    first = questions.iloc[0]
    assert first["prompt"].endswith(f"Question: {first['question']}\nAnswer:")
    assert first["prompt"].count("Question:") == cal.N_SHOTS + 1
    assert cal.question_set(20, seed=1).equals(questions)


def test_overlap_and_correlations():
    assert cw.iou([1, 2, 3], [2, 3, 4]) == 0.5
    g = np.random.default_rng(0)
    import pandas as pd
    base = pd.DataFrame({"neuron": range(50), "norm": g.uniform(1, 2, 50), "logit_var": g.uniform(1, 2, 50),
                         "null_frac": g.uniform(0, 1, 50)})
    sweep = cw.overlap_sweep(base, base.copy(), [0.25, 1.0], [3, 5])
    assert (sweep["iou"] == 1).all() and len(sweep) == 4
    assert np.allclose(cw.score_correlations(base, base)[["pearson", "spearman"]], 1)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("conf-pair"))


@pytest.fixture(scope="module")
def tiny_pair(tiny_folders):
    base, post = tiny_folders
    return load_pair(base=base, post=post)


TINY_CONFIG = Config(null_dims=4, n_candidates=3, n_random=2, max_tokens=40, n_questions=6, batch_size=2)


@pytest.fixture(scope="module")
def tiny_result(tiny_pair):
    return run(tiny_pair, TINY_CONFIG, data=TEXTS)


def test_run_on_a_tiny_pair_gives_every_table(tiny_pair, tiny_result):
    result = tiny_result
    assert set(result.candidates) == {"base", "post"} and len(result.candidates["base"]) == 3
    assert len(result.neurons) == 2 * 64 and result.layer == 2
    assert len(result.ablation) == 2 * 5 and set(result.ablation["group"]) == {"candidate", "random"}
    assert np.allclose(result.ablation["d_entropy_total"],
                       result.ablation["d_entropy_direct"] + result.ablation["d_entropy_via_norm"])
    assert set(result.calibration["model"]) == {"base", "post"} and len(result.questions) == 2 * 6
    assert 0 <= result.iou <= 1 and len(result.correlations) == 3
    with pytest.raises(SteeringError):
        run(tiny_pair, Config(layer=7), data=TEXTS)


@pytest.mark.parametrize("bad, words", [
    ({"n_questions": 1}, "at least 2 questions"), ({"top_norm_fraction": 0.0}, "norm fraction"),
    ({"n_candidates": 0}, "at least one candidate"), ({"null_dims": 10_000}, "null space"),
    ({"n_bins": 1}, "n_bins"), ({"layer": -4}, "out of range")])
def test_bad_settings_are_refused_before_any_model_runs(tiny_pair, monkeypatch, bad, words):
    from dataclasses import replace
    monkeypatch.setattr(type(tiny_pair), "models", lambda self: pytest.fail("the models ran"))
    with pytest.raises(SteeringError, match=words):  # InvalidInputError, or LayerOutOfRangeError for the layer
        run(tiny_pair, replace(TINY_CONFIG, **bad), data=TEXTS)
    with pytest.raises(InvalidInputError, match="empty"):
        run(tiny_pair, TINY_CONFIG, data=[])


def test_the_result_survives_the_store(tiny_result, tmp_path):
    from dataclasses import fields

    import pandas as pd

    from analyses.confidence import STUDY
    from analyses.store import read_result, write_result
    folder = write_result(tiny_result, tmp_path / "r", {"study": STUDY.name, "version": STUDY.version})
    back = read_result(folder, STUDY).result
    for f in fields(tiny_result):
        ours, theirs = getattr(tiny_result, f.name), getattr(back, f.name)
        if isinstance(ours, pd.DataFrame):
            pd.testing.assert_frame_equal(theirs, ours)
        else:
            assert theirs == ours, f.name
    assert back.candidates["post"] == tiny_result.candidates["post"] and isinstance(back.iou, float)


def test_headline_matches_the_tables(tiny_result):
    from analyses.confidence import headline
    numbers = headline(tiny_result)
    assert all(np.isfinite(v) for v in numbers.values())
    neurons = tiny_result.neurons
    chosen = {m: neurons[(neurons["model"] == m) & neurons["candidate"]]["neuron"].tolist() for m in ("base", "post")}
    assert numbers["entropy_neuron_iou"] == cw.iou(chosen["base"], chosen["post"])
    for model, rows in tiny_result.questions.groupby("model"):
        assert numbers[f"ece/{model}"] == pytest.approx(
            cal.expected_calibration_error(rows["correct"].to_numpy(), rows["confidence"].to_numpy(), 10))
        assert numbers[f"accuracy/{model}"] == pytest.approx(rows["correct"].mean())
        assert numbers[f"mean_entropy/{model}"] == pytest.approx(rows["entropy"].mean())
        assert numbers[f"mean_max_prob/{model}"] == pytest.approx(rows["confidence"].mean())
        ablated = tiny_result.ablation[tiny_result.ablation["model"] == model]
        for group in ("candidate", "random"):
            assert numbers[f"ablation_d_entropy_{group}/{model}"] == pytest.approx(
                ablated[ablated["group"] == group]["d_entropy_total"].mean())
    assert len(numbers) == 1 + 2 * 6


def test_a_base_only_pair_has_no_overlap_and_survives_the_store(tiny_folders, tmp_path):
    import pandas as pd

    from analyses.confidence import STUDY, headline
    from analyses.store import read_result, write_result
    alone = load_pair(base=tiny_folders[0], post=tiny_folders[1], base_only=True)
    result = run(alone, TINY_CONFIG, data=TEXTS[:2])
    assert result.iou is None and result.overlap.empty and set(result.candidates) == {"base"}
    assert "entropy_neuron_iou" not in headline(result) and "ece/base" in headline(result)
    back = read_result(write_result(result, tmp_path / "r", {"study": STUDY.name, "version": STUDY.version}),
                       STUDY).result
    pd.testing.assert_frame_equal(back.overlap, result.overlap)
    assert back.iou is None


def test_cli_writes_tables_and_charts(tiny_pair, tmp_path, monkeypatch, capsys):
    import analyses.confidence.data as conf_data
    from analyses.cli import study_main
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: tiny_pair)
    monkeypatch.setattr(conf_data, "heldout_texts", lambda: TEXTS)
    out = tmp_path / "out"
    code = study_main("confidence", ["--pair", "tiny", "--out", str(out), "--null-dims", "4", "--n-candidates", "3",
                                     "--n-random", "1", "--max-tokens", "40", "--n-questions", "4"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"neurons.csv", "ablation.csv", "calibration.csv", "summary.json", "headline.json", "scatter.html",
            "reliability.html", "overlap.html", "ablation.html"} <= names
    assert "entropy_neuron_iou" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["layer"] == 2


@pytest.mark.parametrize("model_type", ["gemma3_text", "gpt2"])
def test_direct_logits_from_one_unembedding_match_the_frozen_norm_output(model_type):
    model, tok = tiny_model(model_type, seed=5), tiny_tokenizer()
    view = ModelView.of(model)
    from steering.neurons import norm_scale
    if model_type == "gpt2":
        with torch.no_grad():
            view.final_norm.bias.normal_()
    batch = abl.text_batches(tok, TEXTS[:2], 100, 2)[0]
    y, x = abl._forward(model, batch)
    clean_scale = norm_scale(view.final_norm, x) * torch.linspace(0.5, 2, x.shape[1])[None, :, None]
    total, direct = abl._total_and_direct(view, y, x, clean_scale)
    assert torch.allclose(total, view.logits(y), atol=1e-4)
    expected = view.logits(frozen_scale_output(view.final_norm, y, x, clean_scale))
    assert torch.allclose(direct, expected, atol=1e-3, rtol=1e-4)


def test_geometry_is_shared_only_between_identical_unembeddings():
    from analyses.confidence import geometries
    a, b = tiny_model("llama", seed=1), tiny_model("llama", seed=2)
    same = geometries({"base": a, "post": a})
    assert same["base"] is same["post"]
    different = geometries({"base": a, "post": b})
    assert different["base"] is not different["post"]
