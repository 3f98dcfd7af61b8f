"""The knowledge study on a tiny pair: items, screening, grids and their summaries, cross-model patching, the
stored result's round trip, the headline and the CLI."""
import json
import math

import pandas as pd
import pytest
from tiny import save_tiny_pair, tiny_tokenizer

import analyses.knowledge as kn
from analyses.cli import study_main
from analyses.knowledge import data as kd
from analyses.knowledge import screen
from analyses.store import read_result, write_result
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


@pytest.fixture(scope="module")
def noise_result(pair):
    return kn.trace_items(pair, FACTS, SMALL, require_kept=False)


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


def test_data_hash_tells_item_frames_apart() -> None:
    assert kd.data_hash(FACTS) == kd.data_hash(FACTS.copy())
    assert kd.data_hash(FACTS) != kd.data_hash(FACTS.iloc[::-1])
    assert kd.data_hash(FACTS) != kd.data_hash(FACTS.assign(object=[" dog", " true", " cat", " dog"]))


def test_token_roles_follow_rome() -> None:
    roles = kd.token_roles(2, 4, 8)
    assert roles[2] == ["first subject"] and roles[3] == ["middle subject"] and roles[4] == ["last subject"]
    assert roles[5] == ["first after"] and roles[6] == ["further"] and roles[7] == ["last"]
    assert kd.token_roles(1, 1, 3)[1] == ["first subject", "last subject"]


def test_noise_study_on_a_tiny_pair(noise_result) -> None:
    result = noise_result
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


def test_the_result_survives_the_store(noise_result, tmp_path) -> None:
    folder = write_result(noise_result, tmp_path / "r", {"study": "knowledge", "version": kn.STUDY.version})
    back = read_result(folder, kn.STUDY).result
    for name in ("kept", "grids", "averages", "comparison", "cross", "cross_averages", "recovery", "peaks"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(noise_result, name))
    for name in ("corruption", "noise_std", "n_candidates", "n_kept", "n_traced", "timings"):
        assert getattr(back, name) == getattr(noise_result, name), name


def test_an_empty_cross_table_survives_the_store(pair, tmp_path) -> None:
    config = kn.Config(**{**SMALL.__dict__, "n_items": 1, "components": "resid", "cross_model": False})
    result = kn.trace_items(pair, FACTS, config, require_kept=False)
    assert result.cross.empty and result.cross_averages.empty
    back = read_result(write_result(result, tmp_path / "r", {"study": "knowledge", "version": kn.STUDY.version}),
                       kn.STUDY).result
    assert list(back.cross.columns) == list(result.cross.columns) and back.cross.empty
    assert list(back.cross_averages.columns) == list(result.cross_averages.columns)


def test_headline_names_the_papers_numbers(noise_result) -> None:
    head = kn.headline(noise_result)
    comparison = noise_result.comparison.set_index("component")
    recovery = noise_result.recovery.set_index("direction")
    for component in ("resid", "mlp", "attn"):
        assert head[f"pearson_roles/{component}"] == pytest.approx(comparison.loc[component, "pearson_roles"])
        assert head[f"pearson_cells/{component}"] == pytest.approx(comparison.loc[component, "pearson_cells"])
    for direction in ("base→base", "post→post", "base→post", "post→base"):
        assert head[f"mean_peak/{direction}"] == pytest.approx(recovery.loc[direction, "mean_peak"])
    assert head["n_traced"] == noise_result.n_traced == 2
    assert len(head) == 6 + 4 + 1 and all(math.isfinite(v) for v in head.values())


def test_screening_stops_at_the_first_round_with_enough_items(pair, monkeypatch) -> None:
    monkeypatch.setattr(screen, "SCREEN_CHUNK", 1)
    monkeypatch.setattr(screen, "is_right", lambda found, config: found["item"] >= 2)
    config = kn.Config(**{**SMALL.__dict__, "n_items": 1, "components": "resid", "cross_model": False})
    result = kn.trace_items(pair, FACTS, config)
    assert sorted(result.kept["item"].unique()) == [0, 1, 2]  # item 3 was never screened
    assert set(result.grids["item"]) == {2} and result.n_candidates == 3 and result.n_kept["both"] == 1


def test_paired_study_on_a_tiny_pair(pair) -> None:
    pairs = pd.DataFrame({"subject": ["w3", "w5"], "corrupt_subject": ["w4", "w6"], "object": ["dog", "cat"],
                          "true_statement": ["the w3 is a dog .", "the w5 is a cat ."],
                          "false_statement": ["the w4 is a dog .", "the w6 is a cat ."]})
    config = kn.Config(corruption="paired", n_items=2, n_screen=2, n_shots=0, answers="true,false",
                       components="resid", min_gap=1e-6, cross_model=False)
    result = kn.trace_items(pair, pairs, config, require_kept=False)
    assert result.n_traced == 2 and result.cross.empty
    assert set(result.grids.token_index) == set(range(9))  # "the w3 is a dog . This statement is:" (no BOS)


def test_one_fact_is_traced_even_when_no_model_gets_it_right(pair) -> None:
    fact = {"subject": "w5", "prompt": "the cat w5 is a", "object": " true"}
    result = kn.trace_fact(pair, fact, kn.Config(components="resid", window=2, n_samples=1, cross_model=False))
    assert result.n_traced == 1 and len(result.kept) == 2 and set(result.grids["item"]) == {0}
    with pytest.raises(InvalidInputError, match="does not occur"):
        kn.trace_fact(pair, {**fact, "subject": "w7"}, kn.Config(components="resid"))


def test_right_means_a_gap_and_top_k_for_noise_and_a_ranking_for_pairs() -> None:
    noise, paired = kn.Config(min_gap=0.1, top_k=5), kn.Config(corruption="paired", min_gap=0.1, top_k=5)
    assert screen.is_right({"clean": 0.5, "corrupted": 0.3, "rank": 4}, noise)
    assert not screen.is_right({"clean": 0.5, "corrupted": 0.3, "rank": 5}, noise)
    assert not screen.is_right({"clean": 0.5, "corrupted": 0.45, "rank": 0}, noise)
    assert screen.is_right({"clean": -0.2, "corrupted": -0.4, "rank": 99}, paired)  # ranked right, both below zero


def test_bad_settings_are_named() -> None:
    with pytest.raises(InvalidInputError, match="Components"):
        kn.STUDY.check(kn.Config(components="resid,mlps"))
    with pytest.raises(InvalidInputError, match="corruption"):
        kn.STUDY.check(kn.Config(corruption="blur"))
    with pytest.raises(InvalidInputError, match="dataset"):
        kn.STUDY.check(kn.Config(dataset="rivers"))
    with pytest.raises(InvalidInputError, match="n_shots"):
        kn.STUDY.check(kn.Config(n_shots=-1))


def test_bad_settings_fail_before_the_data_is_built(pair, monkeypatch) -> None:
    monkeypatch.setattr(kd, "default_items", lambda config, tok: pytest.fail("data built before the check"))
    with pytest.raises(InvalidInputError, match="at least 1"):
        kn.run(pair, kn.Config(n_items=0))


def test_nothing_right_is_an_error(pair) -> None:
    with pytest.raises(InvalidInputError, match="None of the"):
        kn.run(pair, kn.Config(**{**SMALL.__dict__, "top_k": 1, "min_gap": 0.9}), data=FACTS)


def test_cli_writes_tables_charts_and_headline(pair, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("steering.load_pair", lambda name, **sources: pair)
    monkeypatch.setattr(kd, "default_items", lambda config, tok: FACTS)
    monkeypatch.setattr(screen, "is_right", lambda found, config: True)  # random tiny models get nothing right
    out = tmp_path / "out"
    code = study_main("knowledge", ["--out", str(out), "--n-items", "1", "--n-screen", "4", "--top-k", "200",
                                    "--min-gap", "1e-6", "--components", "resid", "--window", "2"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_traced"] == 1 and summary["n_kept"]["both"] >= 1
    assert json.loads((out / "headline.json").read_text())["n_traced"] == 1
    assert (out / "grids.csv").exists() and (out / "fact_resid.html").exists() and (out / "cross.html").exists()
    assert "peak cells of the averaged maps" in capsys.readouterr().out
