"""The GGUF conversion parses the file's metadata once: transformers' three parses share the first reader."""
import gguf
import torch

from steering.control_vector import to_control_vector
from steering.directions import Direction, DirectionInfo
from steering.sources import _one_gguf_parse


def _gguf_file(tmp_path):
    direction = Direction(torch.ones(3, 4), DirectionInfo("tiny/base", "toy", "h"), torch.ones(3))
    path = tmp_path / "cv.gguf"
    path.write_bytes(to_control_vector(direction, [1, 2], alpha=1.0, model_hint="llama"))
    return path


def test_every_parse_of_one_file_during_the_conversion_is_the_first(tmp_path, monkeypatch):
    path = _gguf_file(tmp_path)
    parses = []
    original = gguf.GGUFReader

    class Counted(original):
        def __init__(self, *args, **kwargs):
            parses.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counted)
    with _one_gguf_parse():
        first = gguf.GGUFReader(path)
        again = gguf.GGUFReader(str(path))  # as transformers passes it: a string
        assert again is first and len(parses) == 1
        assert [t.name for t in again.tensors] == [t.name for t in Counted(path).tensors]
    assert gguf.GGUFReader is Counted  # put back as it was
    assert gguf.GGUFReader(path) is not first
