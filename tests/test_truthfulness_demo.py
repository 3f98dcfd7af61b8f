"""Truthfulness on the real demo pair (small subsets): the acceptance check that some layer's probe reaches 90% for
both models, with the base/post cosine per layer; and the CLI end to end."""
import json

import pytest
import torch

from analyses.cli import study_main
from analyses.common import Steps
from analyses.statements import statement_set
from analyses.truthfulness import Config, balanced, probed_layers, read_activations
from analyses.truthfulness import probes as tp
from steering import load_pair

pytestmark = pytest.mark.demo


@pytest.fixture(scope="module")
def demo():
    return load_pair("demo")


def test_some_layer_probes_cities_at_90_percent_in_both_models(demo):
    frame = statement_set("cities")
    train = balanced(frame[frame["split"] == "train"], 100, 0)
    test = balanced(frame[frame["split"] == "test"], 60, 0)
    layers = probed_layers(Config(max_layer=12, layer_step=2), demo.n_layers)
    acts = read_activations(demo, list(train["statement"]) + list(test["statement"]), layers, 32,
                            Steps(None, {"acts base": 1, "acts post": 1}))
    y_train, y_test = (torch.as_tensor(f["label"].to_numpy().copy()) for f in (train, test))
    table = tp.probe_table({r: (a[:100], y_train) for r, a in acts.items()},
                           {r: (a[100:], y_test) for r, a in acts.items()}, layers)
    own = table[table["source"] == table["model"]]
    best = own.groupby("model")["accuracy"].max()
    assert (best >= 0.9).all(), best
    directions = tp.direction_table({r: tp.mass_mean(a[:100], y_train) for r, a in acts.items()}, layers)
    assert directions["cosine"].iloc[1:].between(-1, 1).all() and len(directions) == len(layers)


def test_cli_runs_end_to_end_on_the_demo_pair(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: demo)
    assert study_main("truthfulness", [
        "--pair", "demo", "--dataset", "cities", "--out", str(tmp_path / "out"), "--n-test", "8",
        "--train-sets", "elements",  # the paper's method on one small set, up to layer 4: probe at 0.1 of the depth
        "--max-layer", "4", "--probe-fraction", "0.1", "--start-fraction", "0", "--n-steer", "2", "--n-calib", "2",
        "--n-shots", "2", "--alphas", "1", "--batch-size", "8"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dataset"] == "cities" and summary["offsets"] == [-6, -5] and summary["method"] == "paper"
    assert summary["probe_layer"] == 3 and summary["steer_layers"] == [1, 2, 3]
    assert (tmp_path / "out" / "transfer.csv").exists() and (tmp_path / "out" / "pca.html").exists()
    assert (tmp_path / "out" / "truthfulness_directions_post.safetensors").exists()
    assert "intervention" in capsys.readouterr().out
