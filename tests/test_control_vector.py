"""llama.cpp control vectors (steering/control_vector.py): a direction goes out as GGUF bytes and comes back as a
direction that adds exactly the same vectors, with llama.cpp's layer numbering, and no file is written."""
import numpy as np
import pytest
import torch

from steering.control_vector import (from_control_vector, read_control_vector, to_control_vector,
                                     write_control_vector)
from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidInputError


def _direction(n_layers: int = 5, d: int = 8) -> Direction:
    g = torch.Generator().manual_seed(3)
    return Direction(torch.randn(n_layers, d, generator=g), DirectionInfo("tiny/base", "toy", "h"),
                     torch.rand(n_layers, generator=g) + 1)


def test_a_direction_round_trips_through_gguf_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    direction = _direction()
    data = to_control_vector(direction, [1, 2, 4], alpha=3.0, model_hint="llama")
    assert data[:4] == b"GGUF" and list(tmp_path.iterdir()) == []  # bytes in memory, no file
    back = from_control_vector(data, n_layers=5, name="cv.gguf")
    assert back.info.model == "llama" and back.info.dataset == "cv.gguf" and back.info.use == "add"
    assert (back.n_layers, back.d_model) == (5, 8)
    expected = direction.steering_vectors([2, 4], 3.0)  # layer 1 has no llama.cpp slot
    added = back.steering_vectors([0, 1, 2, 3, 4], 1.0)
    for layer in range(5):
        want = expected.get(layer, torch.zeros(8))
        torch.testing.assert_close(added[layer], want, msg=f"layer {layer}")


def test_the_bytes_are_a_gguf_file_with_llama_cpp_layer_numbers(tmp_path):
    import gguf

    vectors = {2: torch.arange(4.0), 3: -torch.arange(4.0)}
    data = write_control_vector(vectors, "gemma3_text")
    path = tmp_path / "cv.gguf"
    path.write_bytes(data)
    on_disk = gguf.GGUFReader(path)  # gguf's own file reader: what llama.cpp's tooling sees
    assert {t.name: np.array(t.data).tolist() for t in on_disk.tensors} == {
        "direction.1": [0.0, 1.0, 2.0, 3.0], "direction.2": [-0.0, -1.0, -2.0, -3.0]}
    assert on_disk.fields["controlvector.layer_count"].parts[-1][0] == 2
    back, hint = read_control_vector(data)
    assert hint == "gemma3_text" and set(back) == {2, 3}
    torch.testing.assert_close(back[3], vectors[3])


@pytest.mark.parametrize("data, message", [
    (b"not gguf at all, just some bytes here", "not a llama.cpp control vector"),
    (b"GGUF\x03\x00\x00\x00" + b"\x05" * 8, "not a llama.cpp control vector"),
])
def test_bad_bytes_are_refused_in_one_sentence(data, message):
    with pytest.raises(InvalidInputError, match=message):
        read_control_vector(data, "upload.gguf")


def test_layers_without_a_llama_cpp_slot_or_beyond_the_model_are_refused():
    with pytest.raises(InvalidInputError, match="starts at resid_pre.2"):
        to_control_vector(_direction(), [0, 1], 1.0, "llama")
    data = to_control_vector(_direction(), [4], 1.0, "llama")
    with pytest.raises(InvalidInputError, match="only 3 layers"):
        from_control_vector(data, n_layers=3, name="big.gguf")
