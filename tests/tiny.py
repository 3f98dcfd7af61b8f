"""Tiny random models of every supported architecture, and a word-level tokenizer, built offline from configs."""
from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

VOCAB = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"] + [
    f"w{i}" for i in range(90)
] + ["user", "model", "\n", "the", "cat", "dog", "is", "a", "true", "false", "."]

_COMMON = dict(vocab_size=len(VOCAB), pad_token_id=0, eos_token_id=1, bos_token_id=2)
_LLAMA_LIKE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)
CONFIGS = {
    "gemma3_text": lambda: transformers.Gemma3TextConfig(**_LLAMA_LIKE, head_dim=8, sliding_window=4,
                                                         layer_types=["sliding_attention", "sliding_attention",
                                                                      "full_attention"], **_COMMON),
    "gemma2": lambda: transformers.Gemma2Config(**_LLAMA_LIKE, head_dim=8, sliding_window=4, **_COMMON),
    "gemma": lambda: transformers.GemmaConfig(**_LLAMA_LIKE, head_dim=8, **_COMMON),
    "llama": lambda: transformers.LlamaConfig(**_LLAMA_LIKE, **_COMMON),
    "mistral": lambda: transformers.MistralConfig(**_LLAMA_LIKE, **_COMMON),
    "qwen2": lambda: transformers.Qwen2Config(**_LLAMA_LIKE, **_COMMON),
    "gpt2": lambda: transformers.GPT2Config(n_layer=3, n_embd=32, n_head=4, n_positions=128, **_COMMON),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4,
                                                   intermediate_size=64, max_position_embeddings=128, **_COMMON),
}
MODEL_TYPES = sorted(CONFIGS)


def tiny_model(model_type: str = "llama", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = CONFIGS[model_type]()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random init is too small to move greedy decoding; widen it a little
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model.eval()


GEMMA_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", padding_side="left",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA_TEMPLATE
    return fast


def save_tiny_pair(root, model_type: str = "gemma3_text") -> tuple[str, str]:
    """Two tiny models of one architecture (different seeds) saved as local folders with the tokenizer."""
    from pathlib import Path

    folders = []
    for role, seed in (("base", 1), ("post", 2)):
        folder = Path(root) / role
        tiny_model(model_type, seed=seed).save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        folders.append(str(folder))
    return folders[0], folders[1]
