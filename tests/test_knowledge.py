"""The knowledge study on a tiny pair: items, screening, grids and their summaries, cross-model patching, CLI."""
import json

import pandas as pd
import pytest
from tiny import save_tiny_pair, tiny_tokenizer

import analyses.knowledge as kn
from analyses import knowledge_data as kd
from steering import load_pair
from steering.errors import InvalidInputError

FACTS = pd.DataFrame({"subject": ["w3 w4", "w5", "w6 w7 w8", "w9"],
                      "prompt": ["the w3 w4 is a", "the cat w5 is a", "w6 w7 w8 is the", "a w9 dog is"],
                      "object": [" dog", " true", " cat", " false"]})
SMALL = kn.Config(n_items=2, n_screen=4, n_samples=2, top_k=200, min_gap=1e-6, batch_size=64, window=2,
                  noise_scale=3.0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("kn-pair"))
    return load_pair(base=base, post=post)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))


def test_datasets_have_enough_pairs_and_facts_of_equal_token_length() -> None:
    assert sum(len(kd.facts(n)) for n in kd.dataset_names()) >= 200 and len(kd.facts("cities")) >= 200
    tok = tiny_tokenizer()
    pairs = kd.pairs("cities", tok)
    assert len(pairs) >= 200
    row = pairs.iloc[0]
    assert row.subject != row.corrupt_subject and row.object != row.corrupt_object
    assert len(tok(row.true_statement).input_ids) == len(tok(row.false_statement).input_ids)
    assert row.false_statement == row.true_statement.replace(row.subject, row.corrupt_subject, 1)


def test_token_roles_follow_rome() -> None:
    roles = kd.token_roles(2, 4, 8)
    assert roles[2] == ["first subject"] and roles[3] == ["middle subject"] and roles[4] == ["last subject"]
    assert roles[5] == ["first after"] and roles[6] == ["further"] and roles[7] == ["last"]
    assert kd.token_roles(1, 1, 3)[1] == ["first subject", "last subject"]


def test_noise_study_on_a_tiny_pair(pair) -> None:
    result = kn.compute(pair, FACTS, SMALL, require_kept=False)
    assert result.n_traced == 2 and set(result.grids.model) == {"base", "post"}
    assert set(result.grids.component) == {"resid", "mlp", "attn"}
    assert result.kept.groupby("model").size().tolist() == [4, 4]
    # tokens before the subject restore nothing: exactly the corrupted run
    before = result.grids[result.grids.roles == ""]
    assert len(before) and (before["norm"].abs() < 1e-9).all()
    # a one-token subject restored at the input of layer 0 is the whole corruption: the clean run comes back
    one = result.grids[(result.grids.item == 1) & (result.grids.component == "resid") & result.grids.is_subject
                       & (result.grids.layer == 0)]
    assert ((one["norm"] - 1).abs() < 1e-4).all()
    assert {"base→post", "post→base", "base→base", "post→post"} == set(result.recovery.direction)
    assert set(result.comparison.component) == {"resid", "mlp", "attn"}
    assert set(result.averages.role) <= set(kd.ROLES) and len(result.peaks) == 8  # 2 models x 3 + 2 directions


def test_screening_stops_at_the_first_round_with_enough_items(pair, monkeypatch) -> None:
    monkeypatch.setattr(kn, "SCREEN_CHUNK", 1)
    monkeypatch.setattr(kn, "is_right", lambda screen, config: screen["item"] >= 2)
    config = kn.Config(**{**SMALL.__dict__, "n_items": 1, "components": "resid", "cross_model": False})
    result = kn.compute(pair, FACTS, config)
    assert sorted(result.kept["item"].unique()) == [0, 1, 2]  # item 3 was never screened
    assert set(result.grids["item"]) == {2} and result.n_candidates == 3 and result.n_kept["both"] == 1


def test_paired_study_on_a_tiny_pair(pair) -> None:
    pairs = pd.DataFrame({"subject": ["w3", "w5"], "corrupt_subject": ["w4", "w6"], "object": ["dog", "cat"],
                          "true_statement": ["the w3 is a dog .", "the w5 is a cat ."],
                          "false_statement": ["the w4 is a dog .", "the w6 is a cat ."]})
    config = kn.Config(corruption="paired", n_items=2, n_screen=2, n_shots=0, answers="true,false",
                       components="resid", min_gap=1e-6, cross_model=False)
    result = kn.compute(pair, pairs, config, require_kept=False)
    assert result.n_traced == 2 and result.cross.empty
    assert set(result.grids.token_index) == set(range(9))  # "the w3 is a dog . This statement is:" (no BOS)


def test_right_means_a_gap_and_top_k_for_noise_and_a_ranking_for_pairs() -> None:
    noise, paired = kn.Config(min_gap=0.1, top_k=5), kn.Config(corruption="paired", min_gap=0.1, top_k=5)
    assert kn.is_right({"clean": 0.5, "corrupted": 0.3, "rank": 4}, noise)
    assert not kn.is_right({"clean": 0.5, "corrupted": 0.3, "rank": 5}, noise)
    assert not kn.is_right({"clean": 0.5, "corrupted": 0.45, "rank": 0}, noise)
    assert kn.is_right({"clean": -0.2, "corrupted": -0.4, "rank": 99}, paired)  # ranked right, both below zero


def test_bad_settings_are_named() -> None:
    with pytest.raises(InvalidInputError, match="Components"):
        kn.check(kn.Config(components="resid,mlps"))
    with pytest.raises(InvalidInputError, match="corruption"):
        kn.check(kn.Config(corruption="blur"))


def test_nothing_right_is_an_error(pair) -> None:
    with pytest.raises(InvalidInputError, match="None of the"):
        kn.run(pair, kn.Config(**{**SMALL.__dict__, "top_k": 1, "min_gap": 0.9}), items=FACTS)


def test_cli_writes_tables_and_charts(pair, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: pair)
    monkeypatch.setattr(kn, "default_items", lambda config, tok: FACTS)
    monkeypatch.setattr(kn, "is_right", lambda screen, config: True)  # random tiny models get nothing right
    out = tmp_path / "out"
    kn.main(["--out", str(out), "--n-items", "1", "--n-screen", "4", "--top-k", "200", "--min-gap", "1e-6",
             "--components", "resid", "--window", "2"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_traced"] == 1 and summary["n_kept"]["both"] >= 1
    assert (out / "grids.csv").exists() and (out / "fact_resid.html").exists() and (out / "cross.html").exists()
