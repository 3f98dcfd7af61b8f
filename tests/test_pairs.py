"""Loading pairs from local folders of tiny models: registry, sources, settings, quantization, memory checks."""
import json
import warnings
from pathlib import Path

import pytest
import torch
import transformers
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
    unembeddings = [ModelView.of(m).unembedding.weight for m in (pair.base, pair.post)]
    assert not torch.equal(*unembeddings)
    assert 5 in pair.post.generation_config.eos_token_id  # <end_of_turn>: plain generate() stops there


# NF4's 16 levels (QLoRA, Dettmers et al. 2023); a weight is rounded to the nearest level times its block's absmax.
NF4_LEVELS = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                           -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                           0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                           0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
NF4_MAX_ERROR = float((NF4_LEVELS[1:] - NF4_LEVELS[:-1]).max() / 2)  # of the block's absmax: half the widest gap


def nf4_decode(layer) -> torch.Tensor:
    """A bitsandbytes 4-bit layer's weight decoded in plain torch from its packed codes and block absmax: an
    oracle that does not run any bitsandbytes kernel."""
    state = layer.weight.quant_state
    codes = layer.weight.data.flatten()
    index = torch.stack([(codes >> 4).long(), (codes & 15).long()], dim=1).flatten()
    absmax = state.absmax if not state.nested else bnb_absmax(state)
    return (NF4_LEVELS[index].reshape(-1, state.blocksize) * absmax.float()[:, None]).reshape(state.shape)


def bnb_absmax(state) -> torch.Tensor:
    import bitsandbytes.functional as bnb_f

    return bnb_f.dequantize_blockwise(state.absmax, state.state2) + state.offset


@pytest.fixture(scope="module")
def wide_pair_dirs(tmp_path_factory):
    """Tiny Llamas whose rows (64, 128) hold whole NF4 blocks of 64, as every real model's do. bitsandbytes 0.50's
    CPU de-quantization kernel is wrong for rows shorter than a block (32 here would straddle two rows)."""
    root = tmp_path_factory.mktemp("wide")
    folders = []
    for role, seed in (("base", 1), ("post", 2)):
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                          vocab_size=len(tiny_tokenizer()), pad_token_id=0, eos_token_id=1,
                                          bos_token_id=2)
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(root / role)
        tiny_tokenizer().save_pretrained(root / role)
        folders.append(root / role)
    return tuple(folders)


@pytest.mark.parametrize("kernel", ["bitsandbytes' choice", "fallback forced"])
def test_4bit_pair_is_the_model_with_its_nf4_weights(wide_pair_dirs, kernel):
    """The project's part of 4-bit loading, checked against a kernel-free oracle: the layers are bitsandbytes',
    their weights are the full-precision ones within NF4's rounding, and the quantized model computes what a plain
    model carrying those rounded weights computes. bitsandbytes picks its CPU kernel by processor (a fused bfloat16
    kernel where AVX512-BF16 is present); 'fallback forced' turns that off, so both paths run on any machine."""
    base, post = wide_pair_dirs
    pair = load_pair(base=str(base), post=str(post), quantization="4bit")
    quantized = {n: m for n, m in pair.base.named_modules() if type(m).__name__ == "Linear4bit"}
    assert quantized and type(ModelView.of(pair.base).mlp_down(0)).__name__ == "Linear4bit"
    fused = kernel == "bitsandbytes' choice" and all(m.support_avx512bf16_for_cpu for m in quantized.values())
    if kernel == "fallback forced":
        for m in quantized.values():
            m.support_avx512bf16_for_cpu = False
    full = transformers.AutoModelForCausalLM.from_pretrained(base).eval()
    rounded = transformers.AutoModelForCausalLM.from_pretrained(base).eval()
    for name, layer in quantized.items():
        weight, original = nf4_decode(layer), full.get_submodule(name).weight.detach()
        block_max = original.reshape(-1, layer.weight.quant_state.blocksize).abs().amax(1, keepdim=True)
        assert ((weight - original).reshape(block_max.shape[0], -1).abs() <= NF4_MAX_ERROR * block_max + 1e-7).all()
        rounded.get_submodule(name).weight.data.copy_(weight)
    ids = torch.tensor([[6, 7, 8, 9], [10, 11, 12, 13]])
    with torch.no_grad():  # inference, as the studies run (the fused kernel is used only without grad)
        logits, expected = pair.base(ids).logits, rounded(ids).logits
    # float32 compute; the fused kernel rounds activations to bfloat16 (8 bits of mantissa) in every layer
    tolerance = 3e-2 if fused else 1e-4
    torch.testing.assert_close(logits, expected, atol=tolerance * expected.abs().max().item(), rtol=0)
    # after a forward the fused kernel has repacked the weight (its block absmax in bfloat16); the analysis view
    # still reads the NF4 weight
    weight = ModelView.of(rounded).mlp_down(0).weight.detach()
    torch.testing.assert_close(ModelView.of(pair.base).mlp_output_weight(0), weight,
                               atol=(1e-2 if fused else 1e-6) * weight.abs().max().item(), rtol=0)


def test_8bit_pair_loads_and_runs_on_the_cpu(tiny_pair_dirs):
    base, post = tiny_pair_dirs
    pair = load_pair(base=str(base), post=str(post), quantization="8bit")
    view = ModelView.of(pair.base)
    assert type(view.mlp_down(0)).__name__ == "Linear8bitLt"
    full = tiny_model("llama", seed=1)
    torch.testing.assert_close(view.mlp_output_weight(0), ModelView.of(full).mlp_down(0).weight, atol=0.02,
                               rtol=0.05)
    ids = torch.tensor([[6, 7, 8]])
    with torch.no_grad():
        logits = pair.base(ids).logits
    assert torch.isfinite(logits).all()
    assert torch.nn.functional.cosine_similarity(logits.flatten(), full(ids).logits.flatten(), dim=0) > 0.99


def test_importing_the_library_prints_no_kernel_hub_warning():
    """bitsandbytes' 'Failed to load CPU gemm_4bit_forward from kernels-community' is filtered: nothing to act on."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import steering, peft, bitsandbytes.backends.cpu.ops"],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr
    assert "kernels-community" not in run.stderr + run.stdout


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
    with pytest.warns(UserWarning, match="Gemma 2/3 overflows in float16"):
        pair = load_pair(base=base, post=post, dtype="float16")
    assert pair.base.dtype == torch.float16


def test_float16_on_llama_loads_without_the_overflow_warning(tmp_path):
    base, post = save_tiny_pair(tmp_path, "llama")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*float16.*")
        pair = load_pair(base=base, post=post, dtype="float16")
    assert pair.base.dtype == torch.float16


def test_checkpoints_of_the_demo_pair_are_pairs_of_their_own(monkeypatch, tmp_path):
    import steering.registry as registry

    (tmp_path / "step12").mkdir()
    (tmp_path / "step3").mkdir()
    demo = registry.pair_spec("demo")
    monkeypatch.setattr(registry, "_raw_registry", lambda: {"demo": {
        "base": demo.post.base, "post": {"base": demo.post.base, "adapter": "assets/demo/adapter"},
        "checkpoints": str(tmp_path), "dpo": str(tmp_path / "no-dpo-stage")}})
    assert registry.checkpoint_names("demo") == ["step3", "step12"]
    spec = registry.pair_spec("demo@step12")
    assert spec.post.adapter == tmp_path / "step12" and spec.name == "demo@step12"
    from steering.errors import AdapterMissingError

    with pytest.raises(AdapterMissingError, match="available: base, step3, step12, sft"):
        registry.pair_spec("demo@step99")
    # the end points are stages too, and any two stages form a pair, the first as the base
    assert registry.stage_names_of(registry.pair_spec("demo")) == ["base", "step3", "step12", "sft"]
    assert registry.pair_spec("demo@base").post == demo.post.base
    assert registry.pair_spec("demo@sft").post == registry.pair_spec("demo").post
    between = registry.pair_spec("demo@step3..sft")
    assert between.base.adapter == tmp_path / "step3" and between.post == registry.pair_spec("demo").post
    with pytest.raises(AdapterMissingError, match="No stage 'step7'.*available: base, step3, step12, sft"):
        registry.pair_spec("demo@step7..sft")


def test_a_gguf_file_is_fingerprinted_by_its_content(tmp_path, monkeypatch):
    """The converted folder's name, and so the demo base's fingerprint that finds the shipped results, must be the
    same wherever and whenever the GGUF file was assembled."""
    import os

    from steering.sources import _fingerprint

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    one, two, other = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf", tmp_path / "c.gguf"
    for path, content in ((one, b"GGUF same bytes"), (two, b"GGUF same bytes"), (other, b"GGUF other bytes")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.utime(two, ns=(1, 1))
    assert _fingerprint(one) == _fingerprint(two) != _fingerprint(other)
    one.write_bytes(b"GGUF changed bytes")  # a new size and mtime: hashed again, not read from the memo
    assert _fingerprint(one) != _fingerprint(two)
