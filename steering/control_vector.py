"""A direction as a llama.cpp control vector (GGUF), and a control vector back as a direction, all in memory.

llama.cpp adds tensor `direction.N` to the OUTPUT of its 0-based layer N, N >= 1 (it has no slot for the output of
layer 0 nor for the embeddings). Our vectors[l] live at resid_pre.l, the output of layer l-1, so vectors[l] is
written as direction.{l-1}, for l >= 2.

    data = to_control_vector(direction, layers=[6, 7], alpha=4.0, model_hint="gemma3_text")   # bytes, for download
    back = from_control_vector(data, n_layers=18, name="upload.gguf")   # alpha 1 adds exactly what was written

gguf (pinned in requirements.txt) writes tensors with ndarray.tofile and reads through np.memmap, both of which need
a real file; the two small subclasses below do the same in memory, so no temporary file is ever written."""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict

import gguf
import numpy as np
import torch
from gguf.gguf_reader import READER_SUPPORTED_VERSIONS
from gguf.gguf_writer import WriterState

from .directions import Direction, DirectionInfo
from .errors import BadFileError, InvalidInputError

ARCH = "controlvector"
METHOD = "llama.cpp control vector"


def to_llama_cpp_layer(resid_pre_layer: int) -> int:
    if resid_pre_layer < 2:
        raise InvalidInputError(f"llama.cpp control vectors cannot steer resid_pre.{resid_pre_layer}: "
                                "its first slot is the output of layer 1 (our resid_pre.2).")
    return resid_pre_layer - 1


class _MemoryWriter(gguf.GGUFWriter):
    """GGUFWriter into a BytesIO: the header, metadata and tensor infos as gguf writes them, the tensor data with
    `tobytes` instead of `tofile` (which needs a file descriptor)."""

    def __init__(self, arch: str):
        super().__init__(None, arch)
        self.buffer = io.BytesIO()

    def open_output_file(self, path=None) -> None:
        if self.fout is None:
            self.fout, self.state = [self.buffer], WriterState.EMPTY

    def write_tensors_to_file(self, *, progress: bool = False) -> None:
        self.write_ti_data_to_file()
        self.write_padding(self.buffer, self.buffer.tell())
        for info in self.tensors[0].values():
            self.buffer.write(info.tensor.tobytes())
            self.write_padding(self.buffer, info.nbytes)
            info.tensor = None
        self.state = WriterState.WEIGHTS


class _MemoryReader(gguf.GGUFReader):
    """GGUFReader over bytes: the file header read here (little-endian, as llama.cpp and gguf write it), the
    metadata and tensors by gguf's own parsing."""

    def __init__(self, data: bytes):
        self.data = np.frombuffer(data, dtype=np.uint8)
        if len(self.data) < 24 or self._get(0, np.uint32, override_order="<")[0] != gguf.GGUF_MAGIC:
            raise ValueError("it does not start with the GGUF magic number")
        version = int(self._get(4, np.uint32)[0])
        if version not in READER_SUPPORTED_VERSIONS:
            raise ValueError(f"GGUF version {version} is not supported")
        self.endianess = gguf.GGUFEndian.LITTLE
        self.fields, self.tensors = OrderedDict(), []
        tensor_count, kv_count = self._get(8, np.uint64, 2)
        offset = self._build_fields(24, kv_count)
        offset, tensor_fields = self._build_tensor_info(offset, tensor_count)
        alignment = self.fields.get("general.alignment")
        self.alignment = int(alignment.parts[-1][0]) if alignment is not None else self.alignment
        self.data_offset = offset + (-offset % self.alignment)
        self._build_tensors(self.data_offset, tensor_fields)


def write_control_vector(vectors: dict[int, torch.Tensor], model_hint: str) -> bytes:
    """The GGUF file's content. vectors: resid_pre layer -> the vector to add there (already scaled); layers < 2
    are skipped, as llama.cpp has no slot for them."""
    usable = {layer: v for layer, v in vectors.items() if layer >= 2}
    if not usable:
        raise InvalidInputError("None of the chosen layers can be expressed as a llama.cpp control vector "
                                "(it starts at resid_pre.2); choose layers from 2 up.")
    writer = _MemoryWriter(ARCH)
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", len(usable))
    for layer, vector in sorted(usable.items()):
        writer.add_tensor(f"direction.{to_llama_cpp_layer(layer)}", vector.detach().float().cpu().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    return writer.buffer.getvalue()


def read_control_vector(data: bytes, name: str = "control vector") -> tuple[dict[int, torch.Tensor], str]:
    """(resid_pre layer -> vector, model hint) from a GGUF control vector's content. Refused, as llama.cpp refuses
    them: a tensor name that is not direction.N with N >= 1, two tensors for one layer (direction.3 and
    direction.03), a tensor that is not a 1-D float32 vector, and vectors of different lengths."""
    try:
        reader = _MemoryReader(data)
        field = reader.fields.get("controlvector.model_hint")
        hint = bytes(field.parts[field.data[0]]).decode() if field else ""
        tensors = [(t.name, t) for t in reader.tensors if t.name.startswith("direction.")]
    # what gguf's parsing raised on 20,000 damaged control vectors: IndexError, ValueError (UnicodeDecodeError among
    # them), KeyError; TypeError for a field of the wrong kind
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _bad(name, f"it is not a GGUF file gguf can read ({e})") from None
    if not tensors:
        raise _bad(name, "it holds no direction.N tensor")
    vectors: dict[int, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for tensor_name, tensor in tensors:
        layer = _llama_cpp_layer(tensor_name, name) + 1
        if layer in seen:
            raise _bad(name, f"two tensors steer llama.cpp layer {layer - 1} ({seen[layer]} and {tensor_name})")
        seen[layer], vectors[layer] = tensor_name, _vector(tensor, name)
    sizes = {v.numel() for v in vectors.values()}
    if len(sizes) != 1:
        raise _bad(name, f"its vectors have different lengths ({', '.join(map(str, sorted(sizes)))})")
    return vectors, hint


def _llama_cpp_layer(tensor_name: str, name: str) -> int:
    """N of `direction.N`: a plain decimal number from 1 up (llama.cpp has no slot 0; a negative N would wrap)."""
    number = tensor_name.removeprefix("direction.")
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise _bad(name, f"tensor '{tensor_name}' is not direction.N with a layer number N of 1 or more")
    return int(number)


def _vector(tensor, name: str) -> torch.Tensor:
    """One tensor as a float32 vector; llama.cpp reads only 1-D F32 tensors, so anything else is refused."""
    shape = [int(n) for n in tensor.shape]
    if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(shape) != 1 or shape[0] < 1:
        raise _bad(name, f"tensor '{tensor.name}' is {tensor.tensor_type.name} of shape {shape}, "
                         "not a non-empty 1-D float32 vector")
    return torch.from_numpy(np.array(tensor.data, dtype=np.float32).reshape(-1))


def _bad(name: str, problem: str) -> BadFileError:
    return BadFileError(name, f"not a llama.cpp control vector: {problem}",
                        "Export it again from this playground or with llama.cpp's tools (one 1-D float32 tensor "
                        "direction.N per layer N >= 1).")


def to_control_vector(direction: Direction, layers: list[int], alpha: float, model_hint: str) -> bytes:
    """The direction at `layers`, scaled as the playground adds it (alpha x typical residual norm), as GGUF."""
    return write_control_vector(direction.steering_vectors(layers, alpha), model_hint)


def from_control_vector(data: bytes, n_layers: int, name: str = "control vector") -> Direction:
    """A control vector as a Direction of an n_layers model: its vectors where the file has them, zero elsewhere.
    resid_norms are the vectors' own norms, so steering with alpha 1 adds exactly what the file holds."""
    vectors, hint = read_control_vector(data, name)
    beyond = sorted(layer for layer in vectors if layer >= n_layers)
    if beyond:
        raise InvalidInputError(f"{name} steers llama.cpp layer {beyond[0] - 1}, but this model has only "
                                f"{n_layers} layers (a control vector only fits the model it was made for).")
    stacked = torch.zeros(n_layers, next(iter(vectors.values())).numel())
    for layer, vector in vectors.items():
        stacked[layer] = vector
    info = DirectionInfo(model=hint or "unknown", dataset=name, dataset_hash=hashlib.sha256(data).hexdigest()[:16],
                         method=METHOD, use="add")
    return Direction(stacked, info, stacked.norm(dim=-1))
