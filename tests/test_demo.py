"""Integration: the real demo base, Google's pretrained Gemma 3 270M installed from PyPI (converted once)."""
import pytest
import torch

from steering import AdapterMissingError, diff_in_means, load_pair
from steering.generation import DecodingSettings, SteeringSpec, compare, generate
from steering.interventions import ablate, record
from steering.model_view import ModelView

pytestmark = [pytest.mark.demo, pytest.mark.numeric]

TRUE = ["The city of Paris is in France.", "The city of Tokyo is in Japan.", "The city of Cairo is in Egypt.",
        "The city of Madrid is in Spain."]
FALSE = ["The city of Paris is in Japan.", "The city of Tokyo is in Egypt.", "The city of Cairo is in Spain.",
         "The city of Madrid is in France."]


@pytest.fixture(scope="module")
def demo():
    return load_pair("demo", base_only=True)


def test_demo_base_is_gemma3_and_knows_a_fact(demo):
    view = ModelView.of(demo.base)
    assert (view.n_layers, view.d_model, demo.base.config.vocab_size) == (18, 640, 262144)
    text = generate(demo.base, demo.tokenizer, ["The city of Paris is in the country of"],
                    decoding=DecodingSettings(max_new_tokens=4))[0]
    assert "France" in text or "French" in text


def test_demo_tokenizer_carries_gemma_turns_and_generation_stops_at_end_of_turn(demo):
    prompt = demo.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert demo.tokenizer.convert_tokens_to_ids("<end_of_turn>") in demo.base.generation_config.eos_token_id


def test_truth_direction_on_the_demo_base_and_steering_it(demo):
    direction = diff_in_means(demo.base, demo.tokenizer, TRUE, FALSE, dataset="cities-mini")
    assert direction.vectors.shape == (18, 640) and torch.isfinite(direction.vectors).all()
    assert (direction.resid_norms > 0).all()
    spec = SteeringSpec(direction, "add", layers=(6,), alpha=8.0)
    table = compare({"base": demo.base}, demo.tokenizer, ["Tell me about cats."], spec,
                    decoding=DecodingSettings(max_new_tokens=8)).table
    assert len(table) == 2 and table.text.nunique() == 2  # the steering moved the text


def test_ablation_on_gemma3_removes_the_direction_everywhere(demo):
    unit = torch.nn.functional.normalize(torch.randn(640), dim=0)
    batch = demo.tokenizer(["The city of Paris is in", "Hello"], return_tensors="pt", padding=True)
    points = [f"resid_pre.{layer}" for layer in range(18)]
    with torch.no_grad(), ablate(demo.base, unit), record(demo.base, points, positions="all") as rec:
        demo.base.model(**batch)
    worst = max((rec.get(p) @ unit).abs().max().item() for p in points)
    typical = rec.get("resid_pre.9").norm(dim=-1).mean().item()
    assert worst < 1e-4 * typical


def test_demo_pair_without_its_adapter_says_so_in_one_sentence(monkeypatch, tmp_path):
    import steering.registry as registry

    spec = registry.pair_spec("demo")
    monkeypatch.setattr(registry, "pair_spec", lambda name: registry.PairSpec(
        **{**spec.__dict__, "post": registry.AdapterSource(spec.post.base, tmp_path / "missing")}))
    import steering.pairs as pairs

    monkeypatch.setattr(pairs, "pair_spec", registry.pair_spec)
    with pytest.raises(AdapterMissingError, match="python -m steering.posttrain"):
        load_pair("demo")
