"""Export a direction as a llama.cpp control vector (GGUF), and read one back.

llama.cpp adds tensor `direction.N` to the OUTPUT of its 0-based layer N, N >= 1 (it has no slot for the output of
layer 0 nor for the embeddings). Our vectors[l] live at resid_pre.l, the output of layer l-1, so vectors[l] is
written as direction.{l-1}, for l >= 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import InvalidInputError


def to_llama_cpp_layer(resid_pre_layer: int) -> int:
    if resid_pre_layer < 2:
        raise InvalidInputError(f"llama.cpp control vectors cannot steer resid_pre.{resid_pre_layer}: "
                                "its first slot is the output of layer 1 (our resid_pre.2).")
    return resid_pre_layer - 1


def write_control_vector(vectors: dict[int, torch.Tensor], path: str | Path, model_hint: str) -> Path:
    """vectors: resid_pre layer -> the vector to add there (already scaled). Layers < 2 are skipped."""
    import gguf

    usable = {layer: v for layer, v in vectors.items() if layer >= 2}
    if not usable:
        raise InvalidInputError("None of the chosen layers can be expressed as a llama.cpp control vector "
                                "(it starts at resid_pre.2); choose layers from 2 up.")
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", len(usable))
    for layer, vector in sorted(usable.items()):
        writer.add_tensor(f"direction.{to_llama_cpp_layer(layer)}", vector.detach().float().cpu().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_control_vector(path: str | Path) -> tuple[dict[int, torch.Tensor], str]:
    """(resid_pre layer -> vector, model hint) from a llama.cpp control vector file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("controlvector.model_hint")
    hint = bytes(field.parts[field.data[0]]).decode() if field else ""
    vectors = {}
    for tensor in reader.tensors:
        name = tensor.name
        if not name.startswith("direction."):
            continue
        vectors[int(name.split(".")[1]) + 1] = torch.from_numpy(np.array(tensor.data, dtype=np.float32).reshape(-1))
    return vectors, hint
