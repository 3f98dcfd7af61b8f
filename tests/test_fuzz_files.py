"""Property tests of every parser and loader of a user's file: whatever the bytes, the answer is a value or one of
the project's named errors (a SteeringError), never a library's exception (csv.Error, struct.error, IndexError,
JSONDecodeError...). Random bytes, random text with random line ends, cells around the csv module's limit, random
tensor names and shapes in safetensors and GGUF files, random config.json contents."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from analyses.contrast_sets import decode_upload, parse_prompt_list
from analyses.csv_files import FIELD_LIMIT, csv_rows
from analyses.statements import parse_statement_csv
from analyses.truthfulness.data import uploaded_statements
from steering.control_vector import _MemoryWriter, from_control_vector, to_control_vector
from steering.directions import Direction, DirectionInfo
from steering.errors import SteeringError
from steering.sources import read_config, resolve

# FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_files.py for a deeper run than the suite's (about 20 s on 2 cores)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
FEW = settings(max_examples=max(1, EXAMPLES // 4), deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20) | st.sampled_from(
    ["1", "0", "true", "false", "statement", "label", "prompt", '"', '""', ",", "=1+1", "-2"])


@st.composite
def csv_like(draw) -> str:
    """Text shaped like a CSV (a header, rows of cells, quotes and commas) with one random line end, or any text."""
    rows = draw(st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=8))
    header = draw(st.sampled_from([["statement", "label"], ["prompt"], ["text", "x"], []]))
    end = draw(LINE_ENDS)
    lines = [",".join(header)] + [",".join(draw(st.sampled_from([c, f'"{c}"'])) for c in row) for row in rows]
    return draw(st.just(end.join(lines)) | st.text())


def _named_error_or(value_check, call) -> None:
    try:
        value = call()
    except SteeringError:
        return
    value_check(value)


@FUZZ
@given(csv_like())
def test_statement_csv_gives_a_table_or_a_named_error(text):
    _named_error_or(lambda frame: frame["label"].isin([0, 1]).all(), lambda: parse_statement_csv(text, "up.csv"))


@FUZZ
@given(csv_like())
def test_prompt_list_gives_prompts_or_a_named_error(text):
    _named_error_or(lambda prompts: all(isinstance(p, str) and p for p in prompts),
                    lambda: parse_prompt_list(text, "list"))


@FUZZ
@given(st.binary(max_size=300))
def test_uploaded_bytes_give_statements_or_a_named_error(data):
    _named_error_or(lambda frame: len(frame) >= 4, lambda: uploaded_statements(data, "up.csv"))
    _named_error_or(lambda prompts: len(prompts) >= 1, lambda: parse_prompt_list(decode_upload(data, "up"), "up"))


@settings(max_examples=30, deadline=None)
@given(st.integers(FIELD_LIMIT - 2, FIELD_LIMIT + 2), st.booleans(), LINE_ENDS)
def test_cells_around_the_csv_limit_are_read_or_named(length, quoted, end):
    cell = "x" * length
    text = f"statement,label{end}" + (f'"{cell}"' if quoted else cell) + f",1{end}a,0{end}"
    try:
        rows = csv_rows(text, "big.csv")
    except SteeringError as e:
        assert length > FIELD_LIMIT and "131,072" in str(e) and "line 2" in str(e)
        return
    assert length <= FIELD_LIMIT and rows[1][0] == cell


@FUZZ
@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                                 max_size=10), min_size=2, max_size=2), max_size=6), LINE_ENDS)
def test_any_line_end_reads_back_the_rows_written(rows, end):
    """Excel's "CSV (Macintosh)" ends lines with a bare CR: it reads as the same rows as LF or CRLF."""
    out = io.StringIO()
    csv.writer(out, lineterminator=end).writerows(rows)
    assert csv_rows(out.getvalue(), "f.csv") == rows


# direction files ------------------------------------------------------------------------------------------------
SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)
META = st.fixed_dictionaries({}, optional={"model": st.text(max_size=5), "dataset": st.text(max_size=5),
                                           "dataset_hash": st.text(max_size=5), "position": st.integers(-5, 5)})


@st.composite
def direction_file(draw) -> bytes:
    names = draw(st.lists(st.sampled_from(["vectors", "resid_norms", "other", ""]), unique=True, max_size=3))
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]))
    tensors = {name: torch.zeros(draw(SHAPES), dtype=dtype) for name in names}
    if draw(st.booleans()):  # often a well-formed [layers, d] 'vectors', so the other parts get tested
        layers = draw(st.integers(1, 4))
        tensors["vectors"] = torch.zeros(layers, draw(st.integers(1, 4)))
        tensors["resid_norms"] = torch.ones(draw(st.sampled_from([(layers,), (layers + 1,), (layers, 1), ()])))
    meta = draw(st.just({"model": "m", "dataset": "d", "dataset_hash": "h"}) | META)
    text = draw(st.sampled_from([json.dumps(meta), json.dumps([meta]), "{", json.dumps("x")]))
    return save(tensors, metadata=draw(st.sampled_from([{"direction": text}, {}, {"other": text}])))


def _a_consistent_direction(direction: Direction) -> None:
    assert direction.vectors.dim() == 2
    assert direction.resid_norms is None or tuple(direction.resid_norms.shape) == (direction.n_layers,)


@FUZZ
@given(direction_file() | st.binary(max_size=200))
def test_direction_files_give_a_direction_or_a_named_error(data):
    _named_error_or(_a_consistent_direction, lambda: Direction.from_bytes(data, "upload.safetensors"))


@FUZZ
@given(st.data())
def test_a_damaged_direction_file_gives_a_named_error(data):
    good = Direction(torch.randn(3, 4), DirectionInfo("m", "d", "h"), torch.ones(3)).to_bytes()
    cut = data.draw(st.integers(0, len(good)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=3))
    damaged = bytearray(good[:cut] + good[cut:] if data.draw(st.booleans()) else good[:cut])
    for at, byte in flips:
        if at < len(damaged):
            damaged[at] = byte
    _named_error_or(_a_consistent_direction, lambda: Direction.from_bytes(bytes(damaged), "d.safetensors"))


# llama.cpp control vectors --------------------------------------------------------------------------------------
TENSOR_NAME = st.one_of(st.integers(-200, 20).map(lambda n: f"direction.{n}"),
                        st.integers(0, 9).map(lambda n: f"direction.0{n}"),
                        st.text(max_size=6).map(lambda t: f"direction.{t}"), st.text(max_size=8))


@st.composite
def control_vector(draw) -> bytes:
    writer = _MemoryWriter("controlvector")
    writer.add_string("controlvector.model_hint", draw(st.text(max_size=5)))
    for name in draw(st.lists(TENSOR_NAME, unique=True, max_size=4)):
        shape = draw(st.sampled_from([(4,), (3,), (2, 4), (1, 4), (0,)]))
        dtype = draw(st.sampled_from([np.float32, np.float16, np.int32]))
        writer.add_tensor(name, np.ones(shape, dtype=dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    return writer.buffer.getvalue()


def _fits_six_layers(direction: Direction) -> None:
    assert direction.n_layers == 6 and direction.d_model >= 1
    assert float(direction.vectors[:2].abs().sum()) == 0.0  # llama.cpp has no slot for resid_pre 0 and 1


@FUZZ
@given(control_vector() | st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: b"GGUF\x03\0\0\0" + b))
def test_control_vectors_give_a_direction_or_a_named_error(data):
    _named_error_or(_fits_six_layers, lambda: from_control_vector(data, 6, "cv.gguf"))


@FUZZ
@given(st.integers(0, 400), st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=3))
def test_a_damaged_control_vector_gives_a_named_error(cut, flips):
    good = bytearray(to_control_vector(Direction(torch.randn(6, 4), DirectionInfo("m", "d", "h"), torch.ones(6)),
                                       [2, 3, 5], 1.0, "llama"))
    for at, byte in flips:
        good[at % len(good)] = byte
    _named_error_or(_fits_six_layers, lambda: from_control_vector(bytes(good[:cut]) if cut else bytes(good), 6))


# model sources --------------------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=100) | st.text(max_size=60).map(str.encode) |
       st.recursive(st.none() | st.integers() | st.text(max_size=4), lambda c: st.lists(c, max_size=3) |
                    st.dictionaries(st.text(max_size=4), c, max_size=3)).map(lambda v: json.dumps(v).encode()))
def test_a_config_json_is_a_dict_or_a_named_error(content):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_bytes(content)
        _named_error_or(lambda config: isinstance(config, dict), lambda: read_config(Path(folder)))
        _named_error_or(lambda path: Path(path) == Path(folder), lambda: resolve(folder))


@FEW
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"GGUF" + b) |
       st.binary(max_size=300).map(lambda b: b"GGUF\x03\0\0\0" + b) | control_vector() |
       st.tuples(control_vector(), st.integers(0, 300)).map(lambda cv_cut: cv_cut[0][:cv_cut[1]]))
def test_a_gguf_source_that_is_no_model_gives_a_named_error(monkeypatch, tmp_path, content):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.gguf"
        path.write_bytes(content)
        with pytest.raises(SteeringError):
            resolve(str(path))
