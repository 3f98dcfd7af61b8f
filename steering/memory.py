"""How much memory a pair needs at a dtype/quantization, and whether it fits, checked before loading."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InsufficientMemoryError

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
QUANTIZED_BYTES = {"8bit": 1.0, "4bit": 0.5 + 0.06}  # NF4 plus its per-block scales
OVERHEAD = 1.2  # activations, KV cache, allocator slack


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    embedding_params: int  # embeddings and unembedding: never quantized by bitsandbytes
    bytes_per_model: float
    n_models: int

    @property
    def total_bytes(self) -> float:
        return self.bytes_per_model * self.n_models

    def __str__(self) -> str:
        return f"{self.total_bytes / 2**30:.1f} GiB for {self.n_models} model(s) of {self.params / 1e9:.2f}B parameters"


def count_params(folder: Path) -> tuple[int, int]:
    """(all parameters, embedding + unembedding parameters) from config.json, without loading weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()
    output = model.get_output_embeddings()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        embeddings += output.weight.numel()
    return total, embeddings


def estimate(folder: Path, dtype: str, quantization: str | None, n_models: int = 2) -> MemoryEstimate:
    total, embeddings = count_params(folder)
    dense = BYTES_PER_PARAM[dtype]
    if quantization:
        per_model = (total - embeddings) * QUANTIZED_BYTES[quantization] + embeddings * dense
    else:
        per_model = total * dense
    return MemoryEstimate(total, embeddings, per_model * OVERHEAD, n_models)


def available_bytes(device: str) -> float:
    if device == "cuda":
        return float(sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())))
    import psutil

    return float(psutil.virtual_memory().available)


def check_fits(need: MemoryEstimate, device: str) -> None:
    have = available_bytes(device)
    if need.total_bytes > have:
        where = "free GPU memory" if device == "cuda" else "free RAM"
        raise InsufficientMemoryError(
            f"This pair needs about {need}, but only {have / 2**30:.1f} GiB of {where} is left: "
            f"try quantization='4bit' or '8bit', a smaller pair, or {'more GPUs' if device == 'cuda' else 'a GPU'}."
        )
