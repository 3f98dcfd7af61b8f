"""The playground's library steps on a tiny pair: directions for both models, and a snippet that reproduces them."""
import contextlib
import io

import pytest
from tiny import save_tiny_pair

from steering import load_pair
from steering.errors import InvalidInputError
from steering.generation import DecodingSettings, SteeringSpec, compare
from steering.playground import ContrastPrompts, cosine_table, directions_for_pair, reproduce_snippet

CONTRAST = ContrastPrompts("toy", ("the cat is true", "w1 w2 true"), ("the cat is false", "w1 w2 false"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("lib-pair"))
    return load_pair(base=base, post=post)


def test_directions_for_both_models_are_cached_and_compared(pair, tmp_path):
    from steering.direction_cache import DirectionCache

    cache = DirectionCache(tmp_path)
    first = directions_for_pair(pair, CONTRAST, cache=cache)
    assert set(first) == {"base", "post"} and len(cache.entries()) == 2
    again = directions_for_pair(pair, CONTRAST, cache=cache)
    assert (again["post"].vectors == first["post"].vectors).all() and len(cache.entries()) == 2
    table = cosine_table(first)
    assert list(table.layer) == [0, 1, 2] and table.cosine.between(-1, 1).all()


def test_one_sided_lists_and_positive_positions_are_refused(pair):
    with pytest.raises(InvalidInputError, match="second prompt list is empty"):
        directions_for_pair(pair, ContrastPrompts("x", ("a",), ()))
    with pytest.raises(InvalidInputError, match="offset from the end"):
        directions_for_pair(pair, ContrastPrompts("x", ("a",), ("b",), position=0))


def test_a_position_before_the_shortest_prompt_is_refused_before_any_work(pair, monkeypatch):
    import steering.playground as playground

    monkeypatch.setattr(playground, "pair_direction", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(InvalidInputError, match=r"Token position -10000 .* shortest prompt \(\d+ tokens\)"):
        directions_for_pair(pair, ContrastPrompts("x", ("the cat is true",), ("w1",), position=-10000))


def test_the_reproduce_snippet_gives_the_same_generations(pair, tmp_path):
    direction = directions_for_pair(pair, CONTRAST)["base"]
    spec = SteeringSpec(direction, "add", (1,), 8.0)
    decoding = DecodingSettings(max_new_tokens=5)
    expected = compare(pair.models(), pair.tokenizer, ["the cat is"], spec, decoding=decoding, chat=False).table
    code = reproduce_snippet(pair, ["the cat is"], False, CONTRAST, "base", spec, decoding)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "snippet", "exec"), namespace)
    assert namespace["table"].text.tolist() == expected.text.tolist()


def test_the_snippet_names_a_built_in_set_and_runs_from_another_folder(pair, tmp_path, monkeypatch):
    from analyses.contrast_sets import builtin_sets

    chosen = builtin_sets()["positive vs negative tone"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), chosen.chat)
    direction = directions_for_pair(pair, contrast)["post"]
    spec = SteeringSpec(direction, "add", (1,), 8.0)
    decoding = DecodingSettings(max_new_tokens=4)
    expected = compare(pair.models(), pair.tokenizer, ["the cat is"], spec, decoding=decoding, chat=False).table
    code = reproduce_snippet(pair, ["the cat is"], False, contrast, "post", spec, decoding, builtin_set=True)
    assert "builtin_sets()['positive vs negative tone']" in code and chosen.positive[0] not in code
    assert len(code) < 2000
    script = tmp_path / "snippet.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, str(script), "exec"), namespace)
    assert namespace["table"].text.tolist() == expected.text.tolist()


def test_the_affine_ablation_needs_each_models_reference_and_the_snippet_reproduces_it(pair):
    from steering.playground import mean_residuals, reference_prompts

    direction = directions_for_pair(pair, CONTRAST)["post"]
    spec = SteeringSpec(direction, "ablate", (1,), ablation="affine")
    decoding = DecodingSettings(max_new_tokens=5)
    with pytest.raises(InvalidInputError, match="affine ablation needs"):
        compare(pair.models(), pair.tokenizer, ["the cat is"], spec, decoding=decoding, chat=False)
    texts, position = reference_prompts(pair, CONTRAST)
    references = mean_residuals(pair, texts, position)
    assert set(references) == {"base", "post"} and references["post"].shape == (3, pair.d_model)
    expected = compare(pair.models(), pair.tokenizer, ["the cat is"], spec, decoding=decoding, chat=False,
                       references=references).table
    code = reproduce_snippet(pair, ["the cat is"], False, CONTRAST, "post", spec, decoding)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "snippet", "exec"), namespace)
    assert namespace["table"].text.tolist() == expected.text.tolist()
