"""The playground page driven by AppTest on a tiny pair: typed lists -> direction -> four generations, and every
bad input shown as an error element, never an exception."""
import pytest
from streamlit.testing.v1 import AppTest


PAGE = "../app_pages/1_Playground.py"


@pytest.fixture
def page(open_page):
    at = open_page("1_Playground.py", timeout=120)
    at.text_area(key="pg_prompts").input("the cat is\nw1 w2 dog")
    at.toggle(key="pg_chat").set_value(False)
    at.radio(key="pg_source").set_value("Your two lists")
    at.run()
    at.text_area(key="pg_pos").input("the cat is true\nw1 w2 true\nw3 a dog is true")
    at.text_area(key="pg_neg").input("the cat is false\nw1 w2 false\nw3 a dog is false")
    at.number_input(key="pg_max_new").set_value(6)
    return at


def _generate(at: AppTest, alpha: float | None = None) -> AppTest:
    if alpha is not None:
        at.number_input(key="pg_alpha").set_value(alpha)
    at.button(key="pg_generate").click().run()
    return at


def _outputs(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_typed_lists_give_four_generations_per_prompt(page):
    at = _generate(page, alpha=50.0)
    assert not at.exception and not at.error
    outputs = _outputs(at)
    assert len(outputs) == 8  # 2 prompts x (base, base steered, post, post steered)
    headers = [m.value for m in at.markdown if m.value.startswith("**") and "Prompt" not in m.value]
    assert headers[:4] == ["**Base**", "**Base · steered**", "**Post-trained**", "**Post-trained · steered**"]
    assert outputs[0] != outputs[1] or outputs[2] != outputs[3]  # a large alpha changes the text
    assert any("Reproduce" in e.label for e in at.expander)


def test_alpha_zero_changes_nothing(page):
    outputs = _outputs(_generate(page, alpha=0.0))
    assert outputs[0::2] == outputs[1::2]


def test_the_direction_is_read_from_the_post_trained_model_unless_told(page):
    assert page.radio(key="pg_read_from").value == "post"
    at = _generate(page)
    assert any("read from the post-trained model" in c.value for c in at.caption)


def test_ablation_and_transfer_run(page):
    page.radio(key="pg_mode").set_value("ablate")
    page.radio(key="pg_read_from").set_value("base")
    at = _generate(page)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    assert any("read from the base model" in c.value for c in at.caption)


@pytest.mark.parametrize("ablation, words", [("affine", "ablate (affine)"), ("project", "ablate (project)")])
def test_ablation_defaults_to_affine_offers_both_and_the_caption_says_what_ran(page, ablation, words):
    assert page.radio(key="pg_ablation").value == "affine"
    at = page.radio(key="pg_mode").set_value("ablate").run()
    assert any("keeps text readable" in c.value for c in at.caption)  # one line on what the choice does
    at.radio(key="pg_ablation").set_value(ablation)
    at = _generate(at)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    [note] = [c.value for c in at.caption if c.value.startswith("ablate")]
    assert words in note and "alpha" not in note
    assert at.session_state["pg_result"].first.ablation == ablation


@pytest.mark.parametrize("setup, message", [
    (lambda at: at.text_area(key="pg_neg").input(""), "empty"),
    (lambda at: at.text_area(key="pg_prompts").input("   "), "empty"),
    (lambda at: at.text_area(key="pg_pos").input("prompt,label\nthe cat,1\n,0"), "line 3"),
    (lambda at: at.text_area(key="pg_pos").input("prompt,label\nthe cat,1,extra"), "line 2"),
    (lambda at: at.text_area(key="pg_prompts").input(" ".join(["w1"] * 200)), "context"),
])
def test_bad_input_is_an_error_element_and_keeps_what_was_typed(page, setup, message):
    setup(page)
    typed = page.text_area(key="pg_prompts").value
    at = _generate(page)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not any("first." in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area(key="pg_prompts").value == typed


def test_a_token_position_before_the_prompt_start_is_one_sentence_not_a_traceback(page):
    page.number_input(key="pg_position").set_value(-10000)
    at = _generate(page)
    assert not at.exception
    assert [e.value for e in at.error] == [at.error[0].value] and "before the start" in at.error[0].value
    assert not at.text  # nothing was generated


def test_the_alpha_sweep_defaults_to_the_useful_range_on_the_post_trained_model(page):
    at = _generate(page)
    assert at.text_input(key="pg_sweep_alphas").value == "0, 0.05, 0.1, 0.15, 0.2"
    assert at.radio(key="pg_sweep_role").value == "post"
    at = at.button(key="pg_sweep").click().run()
    assert not at.exception and not at.error
    sweep = at.session_state["pg_sweep_result"]
    assert sorted(sweep.alpha.unique()) == [0.0, 0.05, 0.1, 0.15, 0.2]
    assert (sweep.distinct_2.between(0, 1) | sweep.distinct_2.isna()).all() and "distinct_2" in at.dataframe[-1].value
    assert any("distinct word pairs" in c.value for c in at.caption)


def test_a_nan_alpha_in_the_sweep_is_named_as_such(page):
    at = _generate(page)
    at.text_input(key="pg_sweep_alphas").input("0, nan")
    at = at.button(key="pg_sweep").click().run()
    assert not at.exception and len(at.error) == 1
    assert "finite" in at.error[0].value and "separated by commas" not in at.error[0].value


def test_a_long_prompt_is_echoed_cut(page):
    page.text_area(key="pg_prompts").input(" ".join(["w1 w2"] * 60))  # 359 characters
    at = _generate(page)
    assert not at.exception and not at.error
    [echo] = [m.value for m in at.markdown if m.value.startswith("**Prompt:**")]
    assert echo.endswith("(359 characters in all)") and len(echo) < 360


def test_one_layer_is_one_slider_value_and_a_range_is_asked_for(page):
    assert page.select_slider(key="pg_layer").value == 1  # the tiny pair's middle layer, shown once, not "1 1"
    at = page.radio(key="pg_layer_span").set_value("a range").run()
    at.select_slider(key="pg_layers").set_range(0, 2)
    at = _generate(at)
    assert not at.exception and not at.error
    assert at.session_state["pg_result"].first.layers == (0, 1, 2)
    at = _generate(at.radio(key="pg_layer_span").set_value("one").run())
    assert at.session_state["pg_result"].first.layers == (1,)


def test_a_bad_csv_list_is_the_only_error(page):
    page.text_area(key="pg_pos").input("prompt,label\nthe cat,1,extra")
    at = _generate(page)
    assert [e.value for e in at.error] == [at.error[0].value] and "line 2" in at.error[0].value


def _direction(n_layers: int = 3, d_model: int = 32, dataset: str = "toy"):
    import torch

    from steering.directions import Direction, DirectionInfo

    g = torch.Generator().manual_seed(0)
    return Direction(torch.randn(n_layers, d_model, generator=g), DirectionInfo("tiny/base", dataset, "h"),
                     torch.rand(n_layers, generator=g) + 1)


def test_a_cached_direction_of_another_shape_is_not_offered(page):
    from steering.direction_cache import DirectionCache

    DirectionCache().put("k", _direction(n_layers=5, d_model=48))
    at = page.radio(key="pg_source").set_value("The direction cache").run()
    assert any("No cached direction has this pair's shape" in i.value for i in at.info)
    at = _generate(at)
    assert not at.exception
    assert [e.value for e in at.error] == ["Choose a cached direction first."]


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="pg_source").set_value("A direction file").run()
    at.file_uploader(key="pg_dir_file").set_value((name, data, "application/octet-stream"))
    return at.run()


def test_an_uploaded_direction_file_steers_and_is_named_in_the_caption(page):
    at = _generate(_upload(page, "truth.safetensors", _direction(dataset="truthful").to_bytes()), alpha=50.0)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    caption = next(c.value for c in at.caption if c.value.startswith("add · layers"))
    assert "direction truth.safetensors (dataset truthful)." in caption


def test_an_uploaded_control_vector_steers(page):
    from steering.control_vector import to_control_vector

    data = to_control_vector(_direction(), [2], 1.0, "gemma3_text")
    at = _upload(page, "steer.gguf", data)
    at.select_slider(key="pg_layer").set_value(2)
    at = _generate(at, alpha=1.0)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    assert any("direction steer.gguf." in c.value for c in at.caption)


def test_a_malformed_upload_is_one_error(page):
    at = _generate(_upload(page, "bad.safetensors", b"garbage"))
    assert not at.exception
    assert len(at.error) == 1 and "bad.safetensors is not a direction file" in at.error[0].value


def test_a_studys_stored_direction_can_be_chosen(page, tiny_request, tmp_path, monkeypatch):
    from dataclasses import dataclass

    import analyses
    from analyses.store import ResultStore, fingerprints, write_result
    from analyses.study import Study
    from steering import load_pair

    @dataclass
    class Result:
        directions: dict

    study = Study(name="toy", title="Toy", about="", version="toy@1", Config=dict, Result=Result, run=None,
                  charts=None, headline=None, default_data=None, data_hash=None)
    monkeypatch.setattr(analyses, "STUDIES", [study])
    pair = load_pair(base=tiny_request.base, post=tiny_request.post)
    write_result(Result({"post": _direction(dataset="refuse")}), ResultStore().root / "toy" / "k",
                 {"study": "toy", "version": "toy@1", "key": "k", "fingerprints": fingerprints(pair),
                  "created_at": "2026-12-01T10:00:00+00:00"})
    at = page.radio(key="pg_source").set_value("From a study's result").run()
    assert at.selectbox(key="pg_study_direction").options == ["toy · directions · post · 2026-12-01"]
    at = _generate(at, alpha=50.0)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    assert any("direction toy · directions · post · 2026-12-01 (dataset refuse)." in c.value for c in at.caption)


@pytest.mark.demo
def test_the_page_on_the_demo_pair_shows_four_generations():
    at = AppTest.from_file(PAGE, default_timeout=600).run()
    assert not at.exception
    at.number_input(key="pg_max_new").set_value(6)
    at.button(key="pg_generate").click().run()
    assert not at.exception and not at.error
    assert len(at.text) == 8  # the two default prompts x four generations
    assert any("Typical residual norm at layer 9" in c.value for c in at.caption)


@pytest.mark.parametrize("key, value, words", [
    ("pg_alpha", 1000.0, "alpha must be between -100 and 100, not 1000"),
    ("pg_position", 5, "token position must be between -10000 and -1, not 5"),
    ("pg_max_new", 0, "Max new tokens must be between 1 and 256, not 0"),
])
def test_a_value_out_of_range_is_refused_where_typed_and_nothing_runs_on_another(page, key, value, words):
    at = _generate(page)  # a first result, at the old settings
    before = at.session_state["pg_result"]
    at.number_input(key=key).set_value(value)
    at = at.run()
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="pg_generate").disabled
    assert at.number_input(key=key).value == value  # what was typed stays, not the old value
    assert at.session_state["pg_result"] is before  # nothing ran (Generate cannot be clicked)


def test_an_alpha_far_past_what_the_model_tolerates_is_flagged_but_allowed(page):
    at = page.number_input(key="pg_alpha").set_value(20.0).run()
    assert any("far past what these models tolerate" in w.value for w in at.warning)
    assert not at.button(key="pg_generate").disabled


def test_the_four_columns_are_written_token_by_token_from_one_generate_per_model(page, monkeypatch):
    import steering.generation as generation

    calls, updates = [], []
    real_generate, real_compare = generation.generate, generation.compare

    def counting_generate(*args, **kwargs):
        calls.append(kwargs.get("on_tokens") is not None)
        return real_generate(*args, **kwargs)

    def watching_compare(*args, on_text=None, **kwargs):
        return real_compare(*args, on_text=lambda rows: (updates.append(rows), on_text(rows)), **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    monkeypatch.setattr(generation, "compare", watching_compare)
    at = _generate(page)
    assert not at.exception and not at.error and len(_outputs(at)) == 8
    assert calls == [True, True]  # one batched, streamed generate per model
    assert len(updates) == 2 * 6  # every step of each model's call reached the page's columns
    final = {(r.prompt, r.model, r.steered): r.text for r in at.session_state["pg_result"].table.itertuples()}
    assert {(r["prompt"], r["model"], r["steered"]): r["text"] for rows in updates for r in rows} == final


@pytest.mark.parametrize("supported", [True, False])
def test_bfloat16_logits_are_offered_where_the_processor_has_them_and_say_tokens_may_differ(page, monkeypatch,
                                                                                          supported):
    import steering.model_view as model_view

    monkeypatch.setattr(model_view, "bf16_matmul_is_fast", lambda: supported)
    at = page.run()
    box = at.checkbox(key="pg_bf16")
    assert "tokens may differ" in box.label and box.disabled is (not supported)
    if supported:
        box.check()
        at = _generate(at)
        assert not at.exception and not at.error and len(_outputs(at)) == 8
        assert any("unembedding='bfloat16'" in c.value for c in at.code)  # the snippet reproduces what ran
