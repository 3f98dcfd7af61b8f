"""Loading pairs from local folders of tiny models: registry, sources, settings, quantization, memory checks."""
import json
from pathlib import Path

import pytest
import torch
from tiny import save_tiny_pair, tiny_model, tiny_tokenizer

from steering import load_pair, pair_names, pair_spec
from steering import memory as memory_module
from steering.errors import (InsufficientMemoryError, ModelNotAvailableError, UnknownPairError,
                             UnsupportedArchitectureError)
from steering.model_view import ModelView
from steering.registry import AdapterSource


@pytest.fixture(scope="module")
def tiny_pair_dirs(tmp_path_factory):
    return tuple(Path(p) for p in save_tiny_pair(tmp_path_factory.mktemp("pair"), "llama"))


def test_registry_lists_the_paper_and_laptop_pairs():
    names = pair_names()
    for expected in ("demo", "llama-3.1-8b", "mistral-7b-v0.3", "llama-2-13b", "qwen2.5-7b", "gemma-2-9b",
                     "gemma-3-270m", "qwen2.5-0.5b", "smollm2-135m"):
        assert expected in names
    demo = pair_spec("demo")
    assert isinstance(demo.post, AdapterSource) and demo.architecture == "gemma3_text"
    assert "<start_of_turn>model" in demo.chat_template_text()
    for name in names:
        spec = pair_spec(name)
        assert spec.params_b > 0 and spec.architecture and spec.chat_template


def test_unknown_pair_and_missing_model_give_one_clear_sentence():
    with pytest.raises(UnknownPairError, match="Known pairs: demo"):
        load_pair("no-such-pair")
    with pytest.raises(ModelNotAvailableError, match="hf download nobody/not-a-model"):
        load_pair(base="nobody/not-a-model", post="nobody/not-a-model-instruct")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_pair(base="/nowhere/model.gguf", post="/nowhere/model.gguf")


def test_local_folders_load_as_a_pair(tiny_pair_dirs):
    base, post = tiny_pair_dirs
    pair = load_pair(base=str(base), post=str(post))
    assert set(pair.models()) == {"base", "post"} and not pair.base.training
    assert pair.settings.dtype == "float32" and pair.settings.device == "cpu"
    assert pair.tokenizer.padding_side == "left" and pair.tokenizer.chat_template
    assert not torch.equal(pair.base.lm_head.weight, pair.post.lm_head.weight)
    assert 5 in pair.post.generation_config.eos_token_id  # <end_of_turn>: plain generate() stops there


@pytest.mark.parametrize("quantization, layer_class", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_pair_loads_and_runs_on_the_cpu(tiny_pair_dirs, quantization, layer_class):
    base, post = tiny_pair_dirs
    pair = load_pair(base=str(base), post=str(post), quantization=quantization)
    view = ModelView.of(pair.base)
    assert type(view.mlp_down(0)).__name__ == layer_class
    full = tiny_model("llama", seed=1)
    weight = view.mlp_output_weight(0)
    torch.testing.assert_close(weight, full.model.layers[0].mlp.down_proj.weight, atol=0.25, rtol=0.3)
    ids = torch.tensor([[6, 7, 8]])
    logits = pair.base(ids).logits
    assert torch.isfinite(logits).all()
    assert torch.nn.functional.cosine_similarity(logits.flatten(), full(ids).logits.flatten(), dim=0) > 0.9


def test_memory_is_checked_before_loading(tiny_pair_dirs, monkeypatch):
    base, post = tiny_pair_dirs
    monkeypatch.setattr(memory_module, "available_bytes", lambda device: 1000.0)
    with pytest.raises(InsufficientMemoryError, match="4bit"):
        load_pair(base=str(base), post=str(post))


def test_memory_estimate_counts_params_and_quantization(tiny_pair_dirs):
    full = memory_module.estimate(tiny_pair_dirs[0], "float32", None)
    assert full.params == sum(p.numel() for p in tiny_model("llama").parameters())
    assert memory_module.estimate(tiny_pair_dirs[0], "float32", "4bit").total_bytes < full.total_bytes
    assert memory_module.estimate(tiny_pair_dirs[0], "bfloat16", None).total_bytes == pytest.approx(full.total_bytes / 2)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    from transformers import AutoModelForCausalLM, BloomConfig

    AutoModelForCausalLM.from_config(BloomConfig(n_layer=1, hidden_size=16, n_head=2, vocab_size=107)).save_pretrained(tmp_path / "b")
    tiny_tokenizer().save_pretrained(tmp_path / "b")
    with pytest.raises(UnsupportedArchitectureError, match="gpt_neox"):
        load_pair(base=str(tmp_path / "b"), post=str(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model_type"] == "bloom"


def test_float16_on_gemma_warns(tmp_path):
    base, post = save_tiny_pair(tmp_path)
    with pytest.warns(UserWarning, match="float16"):
        pair = load_pair(base=base, post=post, dtype="float16")
    assert pair.base.dtype == torch.float16


def test_checkpoints_of_the_demo_pair_are_pairs_of_their_own(monkeypatch, tmp_path):
    import steering.registry as registry

    (tmp_path / "step12").mkdir()
    (tmp_path / "step3").mkdir()
    demo = registry.pair_spec("demo")
    monkeypatch.setattr(registry, "_raw_registry", lambda: {"demo": {
        "base": demo.post.base, "post": {"base": demo.post.base, "adapter": "assets/demo/adapter"},
        "checkpoints": str(tmp_path)}})
    assert registry.checkpoint_names("demo") == ["step3", "step12"]
    spec = registry.pair_spec("demo@step12")
    assert spec.post.adapter == tmp_path / "step12" and spec.name == "demo@step12"
    from steering.errors import AdapterMissingError

    with pytest.raises(AdapterMissingError, match="available: step12, step3"):
        registry.pair_spec("demo@step99")
