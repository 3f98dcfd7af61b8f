"""The Playground's composition controls and steering cards, driven by AppTest on the tiny pair: several directions
at once, every position mode, a card exported and opened again restoring the same tokens, a foreign or broken card
refused in one sentence."""
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from steering.card import card_zip
from steering.composition import FAR


@pytest.fixture
def page(open_page):
    at = open_page("1_Playground.py", timeout=120)
    at.text_area(key="pg_prompts").input("the cat is\nw1 w2 dog")
    at.toggle(key="pg_chat").set_value(False)
    at.radio(key="pg_source").set_value("Your two lists")
    at.run()
    _lists(at, 0)
    at.number_input(key="pg_max_new").set_value(6)
    return at


def _lists(at: AppTest, i: int) -> None:
    suffix = "" if i == 0 else f"_{i}"
    at.text_area(key=f"pg_pos{suffix}").input("the cat is true\nw1 w2 true\nw3 a dog is true")
    at.text_area(key=f"pg_neg{suffix}").input("the cat is false\nw1 w2 false\nw3 a dog is false")


def _generate(at: AppTest) -> AppTest:
    return at.button(key="pg_generate").click().run()


def _outputs(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


@pytest.fixture
def pair(tiny_request):
    from steering import load_pair

    return load_pair(base=tiny_request.base, post=tiny_request.post)


def test_a_second_direction_is_added_ablated_while_the_first_is_added(page):
    page.number_input(key="pg_alpha").set_value(20.0)
    at = page.button(key="pg_add_steering").click().run()
    at.radio(key="pg_source_1").set_value("Your two lists").run()
    _lists(at, 1)
    at.radio(key="pg_mode_1").set_value("ablate")
    at.radio(key="pg_read_from_1").set_value("base")
    at = _generate(at)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    first, second = at.session_state["pg_result"].composition.steerings
    assert (first.mode, first.alpha, second.mode, second.ablation) == ("add", 20.0, "ablate", "affine")
    notes = [c.value for c in at.caption if c.value.startswith("Steering ")]
    assert notes[0].startswith("Steering 1 of 2: add") and notes[1].startswith("Steering 2 of 2: ablate (affine)")
    assert "read from the base model" in notes[1]
    at = at.button(key="pg_remove_steering").click().run()
    assert not at.exception
    assert not [r for r in at.radio if r.key == "pg_source_1"]  # the second block is gone


@pytest.mark.parametrize("kind, setup, positions", [
    ("prompt", lambda at: None, "prompt"),
    ("generated", lambda at: None, "generated"),
    ("from", lambda at: at.number_input(key="pg_positions_from").set_value(-1), range(-1, FAR)),
    ("tokens", lambda at: at.text_input(key="pg_positions_tokens").input("-1, 0, 2"), (-1, 0, 2)),
])
def test_every_position_mode_runs_and_says_what_it_steered(page, kind, setup, positions):
    page.number_input(key="pg_alpha").set_value(50.0)
    at = page.radio(key="pg_positions").set_value(kind).run()
    setup(at)
    at = _generate(at)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    assert at.session_state["pg_result"].first.positions == positions
    label = {"prompt": "prompt only", "generated": "generated only", "from": "from position -1 on",
             "tokens": "positions -1, 0, 2"}[kind]
    assert any(f"positions: {label}" in c.value for c in at.caption)


def test_unreadable_token_positions_are_refused_where_typed(page):
    at = page.radio(key="pg_positions").set_value("tokens").run()
    at = at.text_input(key="pg_positions_tokens").input("-1, soon").run()
    assert any("whole numbers separated by commas" in e.value for e in at.error)
    assert at.button(key="pg_generate").disabled


def test_a_card_opened_in_the_page_restores_the_steering_and_the_same_tokens(page, open_page, pair):
    page.number_input(key="pg_alpha").set_value(20.0)
    page.radio(key="pg_positions").set_value("from").run()
    at = _generate(page.number_input(key="pg_positions_from").set_value(0).run())
    made = at.session_state["pg_result"]
    assert not at.exception and not at.error
    steered = made.table.steered
    assert (made.table.text[steered].values != made.table.text[~steered].values).any()  # the steering shows
    data = card_zip(made.card(pair))

    fresh = open_page("1_Playground.py", timeout=120)  # another session: nothing typed, default prompts
    fresh.file_uploader(key="pg_card_file").set_value(("steering-card.zip", data, "application/zip"))
    fresh = fresh.run()
    assert not fresh.exception and not fresh.error
    assert fresh.text_area(key="pg_prompts").value == "the cat is\nw1 w2 dog" and not fresh.toggle(key="pg_chat").value
    assert fresh.number_input(key="pg_max_new").value == 6
    fresh = _generate(fresh)
    assert not fresh.exception and not fresh.error
    restored = fresh.session_state["pg_result"]
    assert restored.table.text.tolist() == made.table.text.tolist()  # same machine: the same tokens
    spec, again = made.first, restored.first
    assert (again.mode, again.layers, again.alpha, again.positions) == (spec.mode, spec.layers, spec.alpha,
                                                                        spec.positions)
    assert bool((again.direction.vectors == spec.direction.vectors).all())
    assert any("Restored from the steering card steering-card.zip. All 8 texts are the ones it recorded."
               in c.value for c in fresh.caption)


def test_a_card_of_other_models_is_refused_naming_both_and_the_page_stays_usable(page, open_page, pair):
    at = _generate(page)
    card = at.session_state["pg_result"].card(pair)
    foreign = replace(card, fingerprints={**card.fingerprints, "base": "elsewhere/base@m/float32/none"})
    fresh = open_page("1_Playground.py", timeout=120)
    fresh.file_uploader(key="pg_card_file").set_value(("foreign.zip", card_zip(foreign), "application/zip"))
    fresh = fresh.run()
    assert not fresh.exception and len(fresh.error) == 1
    assert "elsewhere/base@m/float32/none" in fresh.error[0].value
    assert pair.fingerprint("base") in fresh.error[0].value
    assert not fresh.button(key="pg_generate").disabled  # steering by hand still works


def test_a_broken_card_is_one_error(open_page):
    at = open_page("1_Playground.py", timeout=120)
    at.file_uploader(key="pg_card_file").set_value(("broken.zip", b"PK\x03\x04 nothing", "application/zip"))
    at = at.run()
    assert not at.exception and len(at.error) == 1 and at.error[0].value.startswith("broken.zip: ")


def test_a_second_directions_alpha_out_of_range_is_refused_where_typed(page):
    at = page.button(key="pg_add_steering").click().run()
    at = at.number_input(key="pg_alpha_1").set_value(1000.0).run()
    assert any("alpha must be between -100 and 100, not 1000" in e.value for e in at.error)
    assert at.button(key="pg_generate").disabled
    assert at.number_input(key="pg_alpha").value == 0.1  # the first block's own field is untouched


def test_a_restored_run_says_how_many_texts_differ_from_the_cards_record(page, open_page, pair):
    at = _generate(page)
    card = at.session_state["pg_result"].card(pair)
    first, *rest = card.generations
    altered = replace(card, generations=({**first, "text": first["text"] + " (edited)"}, *rest))
    fresh = open_page("1_Playground.py", timeout=120)
    fresh.file_uploader(key="pg_card_file").set_value(("edited.zip", card_zip(altered), "application/zip"))
    fresh = _generate(fresh.run())
    assert not fresh.exception and not fresh.error
    assert any("1 of 8 texts differ from the ones it recorded" in c.value for c in fresh.caption)
