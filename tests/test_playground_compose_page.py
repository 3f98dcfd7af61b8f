"""The Playground's composition controls and steering cards, driven by AppTest on the tiny pair: several directions
at once, every position mode, a card exported and opened again restoring the same tokens, a foreign or broken card
refused in one sentence."""
from dataclasses import replace

import pytest
import torch
from streamlit.testing.v1 import AppTest

from steering.card import card_zip, zip_files
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


def test_a_second_directions_unreadable_positions_are_refused_in_its_block_only(page):
    at = page.button(key="pg_add_steering").click().run()
    at = at.radio(key="pg_positions_1").set_value("tokens").run()
    at = at.text_input(key="pg_positions_tokens_1").input("-1, soon").run()
    assert any("whole numbers separated by commas" in e.value for e in at.error)
    assert at.button(key="pg_generate").disabled
    assert at.radio(key="pg_positions").value == "all"  # the first block keeps the default rule


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


LISTS = {0: (("the cat is true", "w1 w2 true", "w3 a dog is true"), ("the cat is false", "w1 w2 false",
                                                                      "w3 a dog is false")),
         1: (("a dog is w5", "w6 w7 dog", "w8 dog w9"), ("a cat is w5", "w6 w7 cat", "w8 cat w9"))}


def _own_lists(at: AppTest, i: int, which: int) -> None:
    suffix = "" if i == 0 else f"_{i}"
    positive, negative = LISTS[which]
    at.text_area(key=f"pg_pos{suffix}").input("\n".join(positive))
    at.text_area(key=f"pg_neg{suffix}").input("\n".join(negative))


def _second_block(at: AppTest, lists: int) -> AppTest:
    at = at.button(key="pg_add_steering").click().run()
    at.radio(key="pg_source_1").set_value("Your two lists").run()
    _own_lists(at, 1, lists)
    return at


def _two_rules(page) -> AppTest:
    """The first direction added on the prompt only, a second (other lists) added from the first generated token."""
    page.number_input(key="pg_alpha").set_value(20.0)
    page.radio(key="pg_positions").set_value("prompt")
    at = _second_block(page, 1)
    at.number_input(key="pg_alpha_1").set_value(-30.0)
    at = at.radio(key="pg_positions_1").set_value("from").run()
    at.number_input(key="pg_positions_from_1").set_value(0)
    return _generate(at)


def test_each_direction_steers_at_its_own_positions_as_the_library_does(page, pair):
    from steering.composition import Composition
    from steering.generation import SteeringSpec, compare
    from steering.playground import ContrastPrompts, directions_for_pair

    at = _two_rules(page)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    run = at.session_state["pg_result"]
    assert [s.positions for s in run.composition.steerings] == ["prompt", range(0, FAR)]
    notes = [c.value for c in at.caption if c.value.startswith("Steering ")]
    assert "positions: prompt only" in notes[0] and "positions: from position 0 on" in notes[1]
    layer = (pair.n_layers // 2,)  # the blocks' default layer
    first, second = (directions_for_pair(pair, ContrastPrompts("custom", *LISTS[i], False, -1))["post"]
                     for i in (0, 1))
    expected = compare(pair.models(), pair.tokenizer, ["the cat is", "w1 w2 dog"], Composition((
        SteeringSpec(first, "add", layer, 20.0, positions="prompt"),
        SteeringSpec(second, "add", layer, -30.0, positions=range(0, FAR)))), decoding=run.decoding, chat=False).table
    assert run.table.text.tolist() == expected.text.tolist()  # same machine: the same tokens


def test_a_card_of_two_rules_restores_each_and_the_same_tokens(page, open_page, pair):
    made = _two_rules(page).session_state["pg_result"]
    fresh = open_page("1_Playground.py", timeout=120)
    fresh.file_uploader(key="pg_card_file").set_value(("two-rules.zip", card_zip(made.card(pair)), "application/zip"))
    fresh = fresh.run()
    assert any("prompt only" in m.value for m in fresh.markdown) and any("from position 0 on" in m.value
                                                                           for m in fresh.markdown)
    fresh = _generate(fresh)
    assert not fresh.exception and not fresh.error
    restored = fresh.session_state["pg_result"]
    assert [s.positions for s in restored.composition.steerings] == ["prompt", range(0, FAR)]
    assert restored.table.text.tolist() == made.table.text.tolist()  # same machine: the same tokens


def _two_affine(page, lists: int) -> AppTest:
    page.radio(key="pg_mode").set_value("ablate")
    _own_lists(page, 0, 0)
    at = _second_block(page, lists)
    at.radio(key="pg_mode_1").set_value("ablate")
    at = at.radio(key="pg_positions_1").set_value("generated").run()
    return _generate(at)


def _same_means(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[r], b[r]) for r in a)


def test_two_affine_ablations_each_set_their_own_contrasts_mean_and_a_card_keeps_both(page, open_page, pair):
    from steering.card import read_card_zip
    from steering.playground import mean_residuals

    at = _two_affine(page, 1)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    run = at.session_state["pg_result"]
    assert [(s.ablation, s.positions) for s in run.composition.steerings] == [("affine", "all"),
                                                                              ("affine", "generated")]
    own = [mean_residuals(pair, list(LISTS[i][1]), -1) for i in (0, 1)]  # each block's negative side
    assert _same_means(run.references[0], own[0]) and _same_means(run.references[1], own[1])
    assert not torch.equal(own[0]["post"], own[1]["post"])
    notes = [c.value for c in at.caption if c.value.startswith("Steering ")]
    assert all("each model's own mean on the first 3 custom prompts" in n for n in notes)
    data = card_zip(run.card(pair))
    card = read_card_zip(data, "two-means.zip")
    assert all(_same_means(card.steerings[i].reference, own[i]) for i in (0, 1)) and card.references is None
    fresh = open_page("1_Playground.py", timeout=120)
    fresh.file_uploader(key="pg_card_file").set_value(("two-means.zip", data, "application/zip"))
    fresh = _generate(fresh.run())
    assert not fresh.exception and not fresh.error
    restored = fresh.session_state["pg_result"]
    assert all(_same_means(restored.references[i], own[i]) for i in (0, 1))
    assert restored.table.text.tolist() == run.table.text.tolist()  # same machine: the same tokens


def test_two_affine_blocks_of_one_contrast_read_its_means_once(page, monkeypatch):
    import app_pages.ui.playground_run as playground_run

    reads = []
    real = playground_run.mean_residuals
    monkeypatch.setattr(playground_run, "mean_residuals", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    at = _two_affine(page, 0)
    assert not at.exception and not at.error
    run = at.session_state["pg_result"]
    assert len(reads) == 1 and run.references[0] is run.references[1]


def test_an_old_card_of_one_rule_and_one_shared_reference_set_still_opens(page, open_page, pair):
    """A card as the page wrote them before: every steering at one rule, one references.safetensors for all."""
    import json

    from steering.card import card_files, card_for
    from steering.composition import Composition
    from steering.generation import compare
    from steering.playground import mean_residuals

    made = _two_affine(page, 1).session_state["pg_result"]
    composition = Composition(tuple(replace(s, positions="prompt") for s in made.composition.steerings))
    shared = mean_residuals(pair, list(LISTS[0][1]), -1)
    table = compare(pair.models(), pair.tokenizer, made.prompts, composition, decoding=made.decoding, chat=False,
                    references=shared).table
    files = card_files(card_for(pair, composition, made.prompts, chat=False, decoding=made.decoding, table=table,
                                references=shared))
    manifest = json.loads(files["manifest.json"])
    for steering in manifest["steerings"]:
        del steering["reference"]  # the key old cards do not have
    files["manifest.json"] = json.dumps(manifest).encode()
    assert "references.safetensors" in files and not any(p.startswith("references/") for p in files)
    fresh = open_page("1_Playground.py", timeout=120)
    fresh.file_uploader(key="pg_card_file").set_value(("old.zip", zip_files(files), "application/zip"))
    fresh = _generate(fresh.run())
    assert not fresh.exception and not fresh.error
    restored = fresh.session_state["pg_result"]
    assert [s.positions for s in restored.composition.steerings] == ["prompt", "prompt"]
    assert all(_same_means(restored.references[i], shared) for i in (0, 1))  # the one set, for every affine block
    assert any("Restored from the steering card old.zip. All 8 texts are the ones it recorded." in c.value
               for c in fresh.caption)

