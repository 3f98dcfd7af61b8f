import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.directions import Direction, DirectionInfo
from steering.errors import IncompatibleDirectionError, InvalidInputError, LayerOutOfRangeError, SettingError
from steering.generation import DecodingSettings, SteeringSpec, compare, generate

PROMPTS = ["the cat is", "w1 w2 w3 dog"]


def _direction(n_layers=3, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(n_layers, d, generator=g), DirectionInfo("tiny", "toy", "h"), torch.full((n_layers,), 3.0))


@pytest.fixture(scope="module")
def setup():
    return {"base": tiny_model("gemma3_text", seed=1), "post": tiny_model("gemma3_text", seed=2)}, tiny_tokenizer()


def test_compare_gives_four_texts_per_prompt_and_batched_equals_separate(setup):
    models, tok = setup
    spec = SteeringSpec(_direction(), "add", layers=(1,), alpha=4.0)
    decoding = DecodingSettings(max_new_tokens=5)
    result = compare(models, tok, PROMPTS, spec, decoding=decoding).table
    assert len(result) == 4 * len(PROMPTS)
    assert set(map(tuple, result[["model", "steered"]].values)) == {("base", False), ("base", True),
                                                                    ("post", False), ("post", True)}
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]
    for role, model in models.items():
        alone_plain = generate(model, tok, texts, decoding=decoding)
        alone_steered = generate(model, tok, texts, steering=spec, decoding=decoding)
        mine = result[result.model == role]
        assert list(mine[~mine.steered].text) == alone_plain
        assert list(mine[mine.steered].text) == alone_steered
    assert (result[result.steered].text.values != result[~result.steered].text.values).any()


def test_alpha_zero_changes_nothing(setup):
    models, tok = setup
    result = compare(models, tok, PROMPTS, SteeringSpec(_direction(), "add", layers=(0, 1, 2), alpha=0.0),
                     decoding=DecodingSettings(max_new_tokens=5)).table
    assert list(result[result.steered].text) == list(result[~result.steered].text)


def test_sampling_is_reproducible_with_a_seed(setup):
    models, tok = setup
    decoding = DecodingSettings(max_new_tokens=6, greedy=False, seed=3, temperature=1.5)
    first = generate(models["base"], tok, PROMPTS, decoding=decoding)
    assert generate(models["base"], tok, PROMPTS, decoding=decoding) == first


@pytest.mark.parametrize("spec, error", [
    (SteeringSpec(_direction(n_layers=4), layers=(0,)), IncompatibleDirectionError),
    (SteeringSpec(_direction(d=16), layers=(0,)), IncompatibleDirectionError),
    (SteeringSpec(_direction(), layers=(9,)), LayerOutOfRangeError),
])
def test_bad_steering_is_refused_before_generating(setup, spec, error):
    models, tok = setup
    with pytest.raises(error):
        compare(models, tok, PROMPTS, spec)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf"), 1e6])
def test_a_bad_alpha_is_refused_where_the_spec_is_made(alpha):
    with pytest.raises(SettingError, match="alpha must be a finite number between -100 and 100"):
        SteeringSpec(_direction(), layers=(0,), alpha=alpha)


def test_bad_decoding_and_prompts_are_refused(setup):
    models, tok = setup
    spec = SteeringSpec(_direction(), layers=(0,))
    with pytest.raises(InvalidInputError, match="max new tokens"):
        compare(models, tok, PROMPTS, spec, decoding=DecodingSettings(max_new_tokens=0))
    with pytest.raises(InvalidInputError, match="at least one prompt"):
        compare(models, tok, ["  ", ""], spec)
    with pytest.raises(InvalidInputError, match="context"):
        generate(models["base"], tok, [" ".join(["w1"] * 120)], decoding=DecodingSettings(max_new_tokens=20))


def test_compare_reports_progress_by_tokens_and_the_texts_do_not_change(setup):
    models, tok = setup
    spec = SteeringSpec(_direction(), "add", layers=(1,), alpha=4.0)
    decoding = DecodingSettings(max_new_tokens=4)
    seen = []
    with_progress = compare(models, tok, PROMPTS, spec, decoding=decoding, chat=False,
                            progress=lambda done, total: seen.append((done, total))).table
    assert with_progress.equals(compare(models, tok, PROMPTS, spec, decoding=decoding, chat=False).table)
    assert {total for _, total in seen} == {2 * 4}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] <= 8 and 4 < done[-1]  # tokens of both models, in order


def test_a_prompt_longer_than_the_context_is_refused_before_any_generation(setup, monkeypatch):
    models, tok = setup
    for model in models.values():
        monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("generation started"))
    limit = models["base"].config.max_position_embeddings
    spec = SteeringSpec(_direction(), "add", layers=(1,), alpha=1.0)
    with pytest.raises(InvalidInputError, match=f"exceeds this model's context of {limit} tokens"):
        compare(models, tok, [" ".join(["w1"] * limit)], spec, chat=False)


def test_streamed_text_grows_token_by_token_and_ends_as_the_unstreamed_greedy_text(setup):
    models, tok = setup
    spec = SteeringSpec(_direction(), "add", layers=(1,), alpha=4.0)
    decoding = DecodingSettings(max_new_tokens=6)
    plain = compare(models, tok, PROMPTS, spec, decoding=decoding).table
    seen: list[list[dict]] = []
    streamed = compare(models, tok, PROMPTS, spec, decoding=decoding, on_text=seen.append).table
    assert streamed.equals(plain)  # identical greedy tokens, streamed or not
    assert len(seen) == len(models) * 6  # one update per step of each model's one batched call
    last = {(r["prompt"], r["model"], r["steered"]): r["text"] for rows in seen for r in rows}
    assert last == {(r.prompt, r.model, r.steered): r.text for r in plain.itertuples()}
    first = seen[0]
    assert all(len(r["text"]) <= len(last[(r["prompt"], r["model"], r["steered"])]) for r in first)
