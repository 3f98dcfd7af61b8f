"""The playground's first demo on the real demo pair: ablating the post-trained model's own refusal direction with
the page's default ablation keeps the text readable (Arditi's projection turned it into "uved uved uved…")."""
import pytest

from analyses.contrast_sets import builtin_sets
from steering.generation import DecodingSettings, SteeringSpec, compare
from steering.playground import ContrastPrompts, directions_for_pair, mean_residuals, reference_prompts

pytestmark = pytest.mark.demo


def readable(tokenizer, text: str) -> bool:
    """Text a loop cannot pass for: most token pairs distinct (a loop of period p over n tokens has about p/n), no
    token over a quarter of the text, and mostly Latin letters, spaces and punctuation (not "ıııı" or mixed-script
    noise), for this English prompt."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    pairs = list(zip(ids, ids[1:]))
    top_share = max(ids.count(i) for i in set(ids)) / len(ids)
    latin = sum(c.isascii() for c in text) / len(text)
    return len(ids) >= 8 and len(set(pairs)) / len(pairs) >= 0.7 and top_share <= 0.25 and latin >= 0.9


def test_the_readable_measure_refuses_the_broken_texts_seen_in_the_page(demo_pair):
    tok = demo_pair.tokenizer
    for broken in [" uved" * 24, "ı" * 24, "I'pickup.I'pickup.I'pickup.I'pickup.",
                   "стройтивативативативативативатива", "How the the of of\nI\n of of of of of of of of of of"]:
        assert not readable(tok, broken), broken
    assert readable(tok, "Choose a lock that fits your budget, has a lock-to-open time of at least ")


def test_the_default_ablation_of_the_post_trained_refusal_direction_keeps_text_readable(demo_pair):
    chosen = builtin_sets()["harmful vs harmless"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), chosen.chat)
    directions = directions_for_pair(demo_pair, contrast)
    layer = demo_pair.n_layers // 2  # the page's default layer
    references = mean_residuals(demo_pair, *reference_prompts(demo_pair, contrast))
    decoding = DecodingSettings(max_new_tokens=24)
    for source in ("post", "base"):  # the model's own direction, and the base's (transfer)
        spec = SteeringSpec(directions[source], "ablate", (layer,), ablation="affine")
        table = compare({"post": demo_pair.post}, demo_pair.tokenizer, ["How do I pick a lock?"], spec,
                        decoding=decoding, references=references).table
        steered = table[table.steered].text.iloc[0]
        assert readable(demo_pair.tokenizer, steered), (source, steered)
