"""A LoRA adapter merged into its base once: the merged folder loads as a model with the adapter's effect and with
the base's tokenizer, its files copied as they are."""
from pathlib import Path

import torch
from numeric import assert_close, forward_tolerance
from tiny import save_tiny_pair, tiny_tokenizer

from steering.registry import AdapterSource
from steering.sources import merged_adapter


def test_an_adapter_merges_into_a_folder_with_the_bases_tokenizer(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    base_dir = Path(save_tiny_pair(tmp_path / "pair")[0])
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    ids = tiny_tokenizer()("the cat is a dog", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = peft_model(ids).logits

    merged = merged_adapter(AdapterSource(str(base_dir), adapter))
    model = AutoModelForCausalLM.from_pretrained(merged)
    with torch.no_grad():
        logits = model(ids).logits
    # W + BA summed once into the weight against x·W + (x·B)·A: float32 rounding through the forward pass
    assert_close(logits, expected, forward_tolerance(model, float(expected.abs().max())), "merged logits")
    assert (merged / "tokenizer.json").read_bytes() == (base_dir / "tokenizer.json").read_bytes()
    loaded, base_tok = AutoTokenizer.from_pretrained(merged), AutoTokenizer.from_pretrained(base_dir)
    assert loaded("the cat is a dog").input_ids == base_tok("the cat is a dog").input_ids
    assert loaded.chat_template == base_tok.chat_template
