"""Truthfulness study: planted directions are recovered by both probes, the intervention moves the score the way
its direction says, the transfer table's shape, the result's Directions, headline and store round trip, the CLI on a
tiny pair."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from analyses.cli import study_main
from analyses.store import read_result, write_result
from analyses.truth_score import statement_offsets, truth_prompts, truth_scores
from analyses.truthfulness import STUDY, Config, balanced, probed_layers, run, score_curve, steering_vectors
from analyses.truthfulness import probes as tp
from analyses.truthfulness import steer as ts
from analyses.truthfulness.transfer import transfer_table
from analyses.truthfulness.config import single_set
from analyses.truthfulness.general import GeneralConfig, generalisation
from steering import Direction, InvalidInputError, load_pair
from steering.interventions import hooks, position_mask
from steering.model_view import ModelView
from steering.tokens import encode

ANSWERS = ("true", "false")


def _planted(n=200, layers=3, d=16, layer=1, seed=0):
    """Noise activations; at `layer` true statements sit +2 along u, false ones -2 (plus an offset)."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, layers, d, generator=g)
    labels = torch.arange(n) % 2
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    acts[:, layer] += (labels[:, None] * 4.0 - 2.0) * u + 5.0
    return acts, labels, u


def test_planted_direction_is_recovered_and_probes_find_its_layer():
    acts, labels, u = _planted()
    diff = tp.mass_mean(acts[:150], labels[:150])
    assert torch.nn.functional.cosine_similarity(diff[1], u, dim=0) > 0.95
    assert abs(diff[1].norm() - 4.0) < 0.8  # the gap between the class means along u
    table = tp.probe_table({"base": (acts[:150], labels[:150])}, {"base": (acts[150:], labels[150:])}, [0, 1, 2])
    acc = table.pivot_table(index="layer", columns="method", values="accuracy")
    assert (acc.loc[1] >= 0.95).all() and (acc.drop(index=1) <= 0.75).all().all()


def test_probe_transfer_works_when_the_other_model_shares_the_direction_and_fails_when_flipped():
    acts, labels, u = _planted()
    flipped = acts.clone()
    flipped[:, 1] -= 2 * (flipped[:, 1] @ u)[:, None] * u  # mirror along u: true and false swap sides
    train = {"base": (acts[:150], labels[:150])}
    test = {"base": (acts[150:], labels[150:]), "post": (flipped[150:], labels[150:])}
    table = tp.probe_table(train, test, [0, 1, 2]).query("layer == 1")
    assert set(table["source"]) == {"base"} and set(table["model"]) == {"base", "post"}
    assert (table.query("model == 'base'")["accuracy"] >= 0.95).all()
    assert (table.query("model == 'post'")["accuracy"] <= 0.1).all()


def test_direction_table_cosine_and_gap():
    a = torch.randn(3, 8)
    table = tp.direction_table({"base": a, "post": -2 * a}, [0, 1, 2], torch.ones(3, 8))
    assert np.allclose(table["cosine"], -1, atol=1e-5) and np.allclose(table["cosine_scaled"], -1, atol=1e-5)
    assert np.allclose(table["gap_post"], 2 * table["gap_base"])
    assert tp.direction_table({"base": a}, [0, 1, 2])["cosine"].isna().all()


def test_one_label_only_is_an_input_error():
    with pytest.raises(InvalidInputError, match="both true and false"):
        tp.mass_mean(torch.randn(4, 2, 3), torch.ones(4, dtype=torch.long))


def test_generalisation_table_holds_out_each_set():
    acts, labels, _ = _planted(n=120)
    per_set = {"a": acts[:40], "b": acts[40:80], "c": acts[80:]}
    table = tp.generalisation_table({"base": per_set}, {"a": labels[:40], "b": labels[40:80], "c": labels[80:]},
                                    [0, 1, 2])
    assert set(table["held_out"]) == {"a", "b", "c"} and len(table) == 3 * 2 * 3
    assert (table.query("layer == 1")["accuracy"] >= 0.9).all()
    assert table.query("held_out == 'a'")["trained_on"].iloc[0] == "b+c"


def _score_gradient(model, tok, prompt, layer):
    """d score / d (vector added at the statement's offsets entering `layer`), by autograd."""
    view = ModelView.of(model)
    delta = torch.zeros(view.d_model, requires_grad=True)
    offsets = list(statement_offsets(tok))

    def add_delta(hidden, where):
        return hidden + position_mask(where, offsets)[None, :, None].to(hidden.dtype) * delta

    batch = encode(tok, [prompt])
    ids = [tok(" " + a, add_special_tokens=False).input_ids[0] for a in ANSWERS]
    with hooks(model, [(f"resid_pre.{layer}", add_delta)]):
        hidden = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                    use_cache=False).last_hidden_state[:, -1]
    probs = torch.softmax(view.logits(hidden).float(), -1)[0]
    (probs[ids[0]] - probs[ids[1]]).backward()
    return delta.grad


def test_intervention_moves_the_score_in_the_sign_the_direction_says():
    model, tok = tiny_model("gemma3_text", seed=5), tiny_tokenizer()
    prefix = "w1 is a w2 . This statement is: true\n"
    statement = "the cat is a dog ."
    grad = _score_gradient(model, tok, truth_prompts([statement], prefix)[0], layer=1)
    vector = {1: grad / grad.norm() * 0.5}
    base = truth_scores(model, tok, truth_prompts([statement], prefix), answers=ANSWERS).item()
    up, down = ts.steered_scores(model, tok, [statement, statement], [1.0, -1.0], vector, prefix=prefix,
                                 answers=ANSWERS)
    assert up > base > down
    # in the study's convention false statements get +alpha, true ones -alpha: both move "as pushed"
    frame = pd.DataFrame({"statement": [statement, statement], "label": [0, 1]})
    table, steered = ts.transfer_table_reference({"base": model}, tok, frame, {"base": vector}, {"base": np.array([base] * 2)},
                                       {"base": base}, [1.0], prefix=prefix, answers=ANSWERS)
    row = table.iloc[0]
    assert row["mean_change_false"] > 0 > row["mean_change_true"] and row["mean_change"] > 0
    assert len(steered) == 2


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama"])
def test_the_batched_transfer_table_equals_one_full_pass_per_job(model_type):
    """The study's table (prefix cached, every source and alpha in one suffix pass, resumed at the first steered
    layer) against the reference that runs each job on the whole prompt and model."""
    models = {"base": tiny_model(model_type, seed=5), "post": tiny_model(model_type, seed=6)}
    tok, prefix = tiny_tokenizer(), "w1 is a w2 . This statement is: true\n"
    frame = pd.DataFrame({"statement": ["the cat is a dog .", "w3 is w4 .", "the w5 w6 w7 is a w8 .", "dog is ."],
                          "label": [0, 1, 1, 0]})
    g = torch.Generator().manual_seed(0)
    d = ModelView.of(models["base"]).d_model
    vectors = {role: ts.layer_vectors(torch.randn(d, generator=g), [1, 2]) for role in models}
    thresholds = {"base": 0.01, "post": -0.02}
    kw = dict(prefix=prefix, answers=ANSWERS, batch_size=3)
    baselines = {role: ts.steered_scores(m, tok, list(frame["statement"]), [], None, **kw) for role, m in models.items()}
    expected = ts.transfer_table_reference(models, tok, frame, vectors, baselines, thresholds, [1.0, 4.0], **kw)
    table, steered, fast_baselines = transfer_table(models, tok, frame, vectors, thresholds, [1.0, 4.0], **kw)
    for role in models:
        np.testing.assert_allclose(fast_baselines[role], baselines[role], atol=1e-6)
    pd.testing.assert_frame_equal(table, expected[0], atol=1e-6)
    pd.testing.assert_frame_equal(steered, expected[1], atol=1e-6)
    assert steered["score_after"].sub(steered["score_before"]).abs().max() > 1e-3  # the steering did something


def test_effect_row_counts_flips_against_the_threshold():
    labels = np.array([1, 1, 0, 0])
    before, after = np.array([0.5, 0.5, -0.5, 0.2]), np.array([-0.1, 0.6, 0.1, 0.3])
    row = ts.effect_row(before, after, labels, tau=0.0)
    assert row["accuracy_before"] == 0.75 and row["accuracy_after"] == 0.25
    assert row["flip_rate"] == pytest.approx(2 / 3)  # two of the three judged right before are wrong after


def test_layer_vectors_split_the_vector_over_the_range_or_add_it_whole_at_each_layer():
    v = torch.ones(4)
    vecs = ts.layer_vectors(v, [2, 3])
    assert list(vecs) == [2, 3] and torch.allclose(sum(vecs.values()), v)
    full = ts.layer_vectors(v, [2, 3, 4], "full")  # the paper: coefficient 1 at every layer
    assert list(full) == [2, 3, 4] and all(torch.equal(x, v) for x in full.values())


def test_the_normalised_effect_is_the_share_of_the_way_to_the_pushed_end():
    labels = np.array([1, 1, 0, 0])
    before, after = np.array([0.5, 0.2, -0.5, 0.0]), np.array([-0.25, 0.3, 0.25, 1.0])
    # true ones pushed to -1: (-0.25 - 0.5) / (-1.5) = 0.5, (0.3 - 0.2) / (-1.2) = -1/12; false ones pushed to +1:
    # (0.25 + 0.5) / 1.5 = 0.5, (1.0 - 0.0) / 1.0 = 1
    expected = [0.5, -1 / 12, 0.5, 1.0]
    np.testing.assert_allclose(ts.normalised_effects(before, after, labels), expected, rtol=1e-12)
    row = ts.effect_row(before, after, labels, tau=0.0)
    assert row["normalised_effect"] == pytest.approx(np.mean(expected))
    assert row["normalised_effect_true"] == pytest.approx((0.5 - 1 / 12) / 2)
    assert row["normalised_effect_false"] == pytest.approx(0.75)
    assert np.isnan(ts.normalised_effects(np.array([-1.0]), np.array([-1.0]), np.array([1]))[0])  # no room


def _tiny_frame(n_facts=24):
    rows = []
    for fact in range(n_facts):
        for label, obj in ((1, f"w{fact % 30}"), (0, f"w{30 + fact % 30}")):
            rows.append({"statement": f"the w{fact} is a {obj} .", "label": label, "subject": f"w{fact}",
                         "object": obj, "fact": fact, "split": "test" if fact % 4 == 0 else "train"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("tr-pair"))
    return load_pair(base=base, post=post)


# the single-set method (truthfulness@2): the paper's default is tested in test_truthfulness_paper.py
TINY = single_set(dataset="tiny", n_train=0, n_test=0, n_shots=2, n_steer=6, n_calib=6, alphas=(1.0, 2.0),
                  answers=ANSWERS, batch_size=8)


@pytest.fixture(scope="module")
def tiny_result(tiny_pair):
    return run(tiny_pair, TINY, data=_tiny_frame())


def test_transfer_table_is_direction_source_by_steered_model(tiny_pair, tiny_result):
    result = tiny_result
    t = result.transfer
    assert len(t) == 2 * 2 * 2
    assert set(zip(t["direction"], t["model"])) == {(s, m) for s in ("base", "post") for m in ("base", "post")}
    assert set(t["alpha"]) == {1.0, 2.0} and t["flip_rate"].between(0, 1).all()
    assert set(result.probes["source"]) == {"base", "post"} and len(result.direction_stats) == tiny_pair.n_layers
    assert result.steer_layers[-1] == result.probe_layer
    assert set(result.pca["model"]) == {"base", "post"}


def test_directions_are_the_mass_mean_of_every_probed_layer(tiny_pair, tiny_result):
    directions, stats = tiny_result.directions, tiny_result.direction_stats
    assert set(directions) == {"base", "post"}
    for role, direction in directions.items():
        assert isinstance(direction, Direction)
        direction.check_fits(tiny_pair.n_layers, tiny_pair.d_model)
        assert direction.info.model == tiny_pair.model_id(role) and direction.info.dataset == "truthfulness:tiny"
        assert np.allclose(direction.vectors.norm(dim=-1).numpy(), stats[f"gap_{role}"], atol=1e-5)
        assert (direction.resid_norms > 0).all()
    assert np.allclose(directions["base"].cosine(directions["post"]).numpy(), stats["cosine"], atol=1e-5)
    # the study steered with the probe layer's row, split over the steered layers
    vectors = steering_vectors(tiny_result)["post"]
    assert list(vectors) == tiny_result.steer_layers
    assert torch.allclose(sum(vectors.values()), directions["post"].at(tiny_result.probe_layer))


def test_layers_not_probed_are_zero_rows_of_the_direction(tiny_pair):
    frame = _tiny_frame(12)
    config = single_set(dataset="tiny", n_train=0, n_test=0, n_shots=2, n_steer=4, n_calib=4, alphas=(1.0,),
                        answers=ANSWERS, layer_step=2, batch_size=8)
    result = run(tiny_pair, config, data=frame)
    probed = probed_layers(config, tiny_pair.n_layers)
    norms = result.directions["base"].vectors.norm(dim=-1)
    # layer 0 is the embedding of the same last token ('.') for every statement: its row is zero too
    assert (norms[probed[1:]] > 0).all() and norms[0] == 0
    assert (norms[[i for i in range(tiny_pair.n_layers) if i not in probed]] == 0).all()
    assert list(result.direction_stats["layer"]) == probed


def test_result_survives_the_store(tiny_result, tmp_path):
    stored = read_result(write_result(tiny_result, tmp_path / "r", {"study": STUDY.name, "version": STUDY.version}),
                         STUDY).result
    for name in ("probes", "direction_stats", "pca", "transfer", "steered"):
        pd.testing.assert_frame_equal(getattr(stored, name), getattr(tiny_result, name))
    for name in ("dataset", "probe_layer", "steer_layers", "offsets", "best", "thresholds", "prefix", "answers",
                 "timings"):
        assert getattr(stored, name) == getattr(tiny_result, name), name
    assert set(stored.directions) == set(tiny_result.directions)
    for role, direction in tiny_result.directions.items():
        again = stored.directions[role]
        assert torch.equal(again.vectors, direction.vectors) and torch.equal(again.resid_norms, direction.resid_norms)
        assert again.info == direction.info


def test_headline_is_flat_finite_and_read_from_the_tables(tiny_result):
    head = STUDY.headline(tiny_result)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in head.values())
    own = tiny_result.probes.query("source == model")
    for role in ("base", "post"):
        for method in ("logistic", "projection"):
            rows = own.query("model == @role and method == @method")
            assert head[f"best_probe_accuracy_{method}/{role}"] == pytest.approx(rows["accuracy"].max(), abs=1e-4)
            best_layer = head[f"best_probe_layer_{method}/{role}"]
            assert rows.set_index("layer").loc[best_layer, "accuracy"] == pytest.approx(rows["accuracy"].max())
    stats = tiny_result.direction_stats
    assert stats.loc[0, "gap_base"] == 0  # the embedding of the same last token: no direction, left out
    assert head["direction_cosine_mean"] == pytest.approx(stats["cosine"].iloc[1:].mean())
    top = tiny_result.transfer.query("alpha == 2.0").set_index(["direction", "model"])
    for source in ("base", "post"):
        for model in ("base", "post"):
            assert head[f"mean_change/{source}->{model}"] == pytest.approx(top.loc[(source, model), "mean_change"])
            assert head[f"flip_rate/{source}->{model}"] == pytest.approx(top.loc[(source, model), "flip_rate"])
            assert head[f"normalised_effect/{source}->{model}"] == pytest.approx(
                top.loc[(source, model), "normalised_effect"])
    assert len(head) == 8 + 1 + 12


def test_score_curve_works_from_a_stored_result(tiny_pair, tiny_result, tmp_path):
    stored = read_result(write_result(tiny_result, tmp_path / "r", {"study": STUDY.name, "version": STUDY.version}),
                         STUDY).result
    curve = score_curve(tiny_pair, stored, "the cat is a dog .", [-2.0, 0.0, 2.0])
    assert len(curve) == 2 * 2 * 3
    pd.testing.assert_frame_equal(curve, score_curve(tiny_pair, tiny_result, "the cat is a dog .", [-2.0, 0.0, 2.0]))
    at_zero = curve.query("alpha == 0").groupby("model")["score"].agg(["min", "max"])
    assert np.allclose(at_zero["min"], at_zero["max"])  # no push: both direction sources score alike
    with pytest.raises(InvalidInputError, match="Type a statement"):
        score_curve(tiny_pair, stored, "  ", [1.0])


class _NoModels:
    """A pair whose models must not be touched: settings are checked before any model runs."""

    n_layers = 3

    def models(self):
        raise AssertionError("a model ran before the settings were checked")


@pytest.mark.parametrize("change, message", [
    ({"probe_layer": 5}, "probe_layer 5 is not among the probed layers"),
    ({"probe_layer": 1, "layer_step": 2}, "probe_layer 1 is not among"),
    ({"layer_start": 3}, "layer_start must be in 0..2"),
    ({"max_layer": 7}, "max_layer must be in 0..2"),
    ({"alphas": ()}, "at least one alpha"),
    ({"answers": ("TRUE",)}, "two answer words"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_settings_are_input_errors_before_any_model_runs(change, message):
    from dataclasses import replace

    with pytest.raises(InvalidInputError, match=message):
        run(_NoModels(), replace(TINY, **change), data=_tiny_frame())


def test_a_statement_set_without_a_split_is_an_input_error(tiny_pair):
    with pytest.raises(InvalidInputError, match="lacks the column"):
        run(tiny_pair, TINY, data=_tiny_frame().drop(columns=["split"]))


def test_config_checks_and_balanced_sample():
    with pytest.raises(InvalidInputError, match="max_layer"):
        probed_layers(Config(max_layer=7), 3)
    assert probed_layers(Config(layer_step=2), 5) == [0, 2, 4]
    sample = balanced(_tiny_frame(), 10, 0)
    assert len(sample) == 10 and sample["label"].sum() == 5


CLI_SMALL = ["--out", "OUT", "--n-steer", "4", "--n-calib", "4", "--n-shots", "2", "--alphas", "1", "--answers",
             "true", "false"]


def _tiny_sets(monkeypatch):
    """Every built-in statement set a tiny frame (the paper method reads its train sets by name)."""
    monkeypatch.setattr("analyses.truthfulness.data.statement_set", lambda name: _tiny_frame())
    monkeypatch.setattr("analyses.truthfulness.compute.statement_set", lambda name: _tiny_frame(8))


def _cli(out, *extra):
    return study_main("truthfulness", [a if a != "OUT" else str(out) for a in CLI_SMALL] + list(extra))


def test_cli_writes_tables_charts_and_directions_on_a_tiny_pair(tiny_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: tiny_pair)
    _tiny_sets(monkeypatch)
    assert _cli(tmp_path / "out", "--dataset", "cities") == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"probes.csv", "direction_stats.csv", "transfer.csv", "pca.csv", "summary.json", "headline.json",
            "probe_accuracy.html", "cosine.html", "pca.html", "transfer_alpha1.html",
            "truthfulness_directions_base.safetensors", "truthfulness_directions_post.safetensors"} <= names
    head = json.loads((tmp_path / "out" / "headline.json").read_text())
    assert "best_probe_accuracy_logistic/base" in head and "normalised_effect/base->post" in head
    assert Direction.load(tmp_path / "out" / "truthfulness_directions_post.safetensors").n_layers == tiny_pair.n_layers
    assert "probe layer" in capsys.readouterr().out


def test_cli_runs_on_the_users_statements(tiny_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: tiny_pair)
    _tiny_sets(monkeypatch)
    frame = _tiny_frame()
    (tmp_path / "mine.csv").write_text(frame[["statement", "label"]].to_csv(index=False))
    assert _cli(tmp_path / "out", "--statements", str(tmp_path / "mine.csv")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dataset"] == "upload:mine.csv"
    steered = pd.read_csv(tmp_path / "out" / "steered.csv")
    assert set(steered["statement"]) <= set(frame["statement"])
    (tmp_path / "bad.csv").write_text("statement,label\nthe cat is a dog .,maybe\n")
    assert _cli(tmp_path / "out2", "--statements", str(tmp_path / "bad.csv")) == 2
    assert "bad.csv, line 2" in capsys.readouterr().err


def test_generalisation_on_a_tiny_pair(tiny_pair):
    table = generalisation(tiny_pair, GeneralConfig(datasets=("cities", "animals", "elements"), n_per_set=8))
    assert set(table["held_out"]) == {"cities", "animals", "elements"} and set(table["model"]) == {"base", "post"}
    with pytest.raises(InvalidInputError, match="two or more"):
        generalisation(tiny_pair, GeneralConfig(datasets=("cities",)))
    # its settings pass the studies' check before any work: NaN and out-of-range values are named
    with pytest.raises(InvalidInputError, match="logistic_c must be a finite number"):
        generalisation(tiny_pair, GeneralConfig(logistic_c=float("nan")))
    with pytest.raises(InvalidInputError, match="n_per_set must be an integer of at least 0"):
        generalisation(tiny_pair, GeneralConfig(n_per_set=-1))


def test_cli_generalisation_writes_its_table(tiny_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: tiny_pair)
    monkeypatch.setattr("analyses.truthfulness.data.statement_set", lambda name: _tiny_frame())
    assert _cli(tmp_path / "out", "--generalisation", "--general-n-per-set", "6") == 0
    table = pd.read_csv(tmp_path / "out" / "generalisation.csv")
    assert set(table["model"]) == {"base", "post"} and len(set(table["held_out"])) == 6
    assert (tmp_path / "out" / "generalisation.html").exists()
    assert "generalisation (best layer per held-out set)" in capsys.readouterr().out


def test_the_probe_table_is_handed_on_while_the_run_works_and_drawn(tiny_pair, tiny_result):
    seen = []

    class Drawing:
        def __call__(self, fraction, message):
            seen.append(message)

        def partial(self, key, value):
            seen.append((key, value))

    run(tiny_pair, TINY, data=_tiny_frame(), progress=Drawing())
    (key, table), = [item for item in seen if isinstance(item, tuple)]
    assert key == "probes"
    pd.testing.assert_frame_equal(table, tiny_result.probes)
    assert seen.index((key, table)) < max(i for i, m in enumerate(seen) if m == "scoring statements" or
                                          str(m).startswith("scoring statements"))  # before the interventions
    assert STUDY.partial_chart("probes", table) is not None and STUDY.partial_chart("other", table) is None
