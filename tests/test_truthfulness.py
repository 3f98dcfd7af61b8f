"""Truthfulness study: planted directions are recovered by both probes, the intervention moves the score the way
its direction says, the transfer table's shape, the CLI on a tiny pair; and (demo) the acceptance figures."""
import numpy as np
import pandas as pd
import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from analyses import truthfulness_probes as tp
from analyses import truthfulness_steer as ts
from analyses.truth_score import statement_offsets, truth_prompts, truth_scores
from analyses.truthfulness import Config, balanced, compute, probed_layers
from analyses.truthfulness_cli import main
from analyses.truthfulness_general import GeneralConfig, compute_general
from steering import InvalidInputError, load_pair
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
    table, steered = ts.transfer_table({"base": model}, tok, frame, {"base": vector}, {"base": np.array([base] * 2)},
                                       {"base": base}, [1.0], prefix=prefix, answers=ANSWERS)
    row = table.iloc[0]
    assert row["mean_change_false"] > 0 > row["mean_change_true"] and row["mean_change"] > 0
    assert len(steered) == 2


def test_effect_row_counts_flips_against_the_threshold():
    labels = np.array([1, 1, 0, 0])
    before, after = np.array([0.5, 0.5, -0.5, 0.2]), np.array([-0.1, 0.6, 0.1, 0.3])
    row = ts.effect_row(before, after, labels, tau=0.0)
    assert row["accuracy_before"] == 0.75 and row["accuracy_after"] == 0.25
    assert row["flip_rate"] == pytest.approx(2 / 3)  # two of the three judged right before are wrong after


def test_layer_vectors_split_the_vector_over_the_range():
    v = torch.ones(4)
    vecs = ts.layer_vectors(v, [2, 3])
    assert list(vecs) == [2, 3] and torch.allclose(sum(vecs.values()), v)


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


TINY = Config(dataset="tiny", n_train=0, n_test=0, n_shots=2, n_steer=6, n_calib=6, alphas=(1.0, 2.0),
              answers=ANSWERS, batch_size=8)


def test_transfer_table_is_direction_source_by_steered_model(tiny_pair):
    result = compute(tiny_pair, TINY, _tiny_frame())
    t = result.transfer
    assert len(t) == 2 * 2 * 2
    assert set(zip(t["direction"], t["model"])) == {(s, m) for s in ("base", "post") for m in ("base", "post")}
    assert set(t["alpha"]) == {1.0, 2.0} and t["flip_rate"].between(0, 1).all()
    assert set(result.probes["source"]) == {"base", "post"} and len(result.directions) == tiny_pair.n_layers
    assert result.vectors.shape == (2, tiny_pair.d_model) and result.steer_layers[-1] == result.probe_layer
    assert set(result.pca["model"]) == {"base", "post"}


def test_config_checks_and_balanced_sample():
    with pytest.raises(InvalidInputError, match="max_layer"):
        probed_layers(Config(max_layer=7), 3)
    assert probed_layers(Config(layer_step=2), 5) == [0, 2, 4]
    sample = balanced(_tiny_frame(), 10, 0)
    assert len(sample) == 10 and sample["label"].sum() == 5


def test_cli_writes_tables_and_charts_on_a_tiny_pair(tiny_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: tiny_pair)
    monkeypatch.setattr("analyses.truthfulness.statement_set", lambda name: _tiny_frame())
    main(["--dataset", "cities", "--out", str(tmp_path / "out"), "--n-steer", "4", "--n-calib", "4", "--n-shots",
          "2", "--alphas", "1", "--answers", "true", "false"])
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"probes.csv", "directions.csv", "transfer.csv", "pca.csv", "summary.json", "probe_accuracy.html",
            "cosine.html", "pca.html", "transfer_alpha1.html"} <= names
    assert "probe layer" in capsys.readouterr().out


def test_generalisation_on_a_tiny_pair(tiny_pair):
    table = compute_general(tiny_pair, GeneralConfig(datasets=("cities", "animals", "elements"), n_per_set=8))
    assert set(table["held_out"]) == {"cities", "animals", "elements"} and set(table["model"]) == {"base", "post"}
