"""Issue 27, the tester's examples one by one: ordinary bad files (CSV, config.json, .gguf, model weights,
direction files, control vectors) and out-of-range refusal positions give one named error, and the command line
one `error:` line and exit code 2, never a traceback. The pages' side is in test_bad_files_pages.py, what goes out
in test_exports.py, the properties over random files in test_fuzz_files.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save
from tiny import save_tiny_pair

from analyses import cli
from analyses.contrast_sets import parse_prompt_list
from analyses.statements import parse_statement_csv
from analyses.truthfulness.data import uploaded_statements
from steering import load_pair
from steering.control_vector import _MemoryWriter, from_control_vector
from steering.directions import Direction
from steering.errors import BadFileError, InvalidInputError, SteeringError

ROOT = Path(__file__).resolve().parents[1]
STATEMENTS = ["statement,label", "the cat is a cat .,1", "the dog is a dog .,1", "the cat is a dog .,0",
              "the dog is a cat .,0"]


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    return save_tiny_pair(tmp_path_factory.mktemp("bad-files-pair"))


# CSV in ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
def test_excel_mac_csv_with_bare_cr_line_ends_reads_like_any_other(end):
    expected = parse_statement_csv("\n".join(STATEMENTS) + "\n")
    pd.testing.assert_frame_equal(parse_statement_csv(end.join(STATEMENTS) + end), expected)
    pd.testing.assert_frame_equal(uploaded_statements((end.join(STATEMENTS) + end).encode(), "mac.csv"),
                                  expected, check_like=True)
    assert parse_prompt_list(end.join(["prompt", "How do I bake bread?", '"Say ""hi"", please"']), csv_file=True) == [
        "How do I bake bread?", 'Say "hi", please']


def test_a_cell_over_the_csv_limit_is_one_named_error():
    text = "\r".join([*STATEMENTS[:2], "x" * 131_073 + ",0", *STATEMENTS[3:]])
    with pytest.raises(BadFileError, match=r"big\.csv: line 3 has a cell longer than 131,072 characters"):
        parse_statement_csv(text, "big.csv")
    with pytest.raises(BadFileError, match="longer than 131,072"):
        parse_prompt_list("prompt\n" + "y" * 200_000, "harmful list", csv_file=True)


# model sources --------------------------------------------------------------------------------------------------
def _broken_config_folder(tiny_folders, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_folders[0], folder)
    (folder / "config.json").write_text('{"model_type": "llama", ')
    return folder


def test_a_folder_with_broken_config_json_is_a_named_error(tiny_folders, tmp_path):
    folder = _broken_config_folder(tiny_folders, tmp_path)
    with pytest.raises(BadFileError, match=r"config\.json: it is not valid JSON .*hf download"):
        load_pair(base=str(folder), post=tiny_folders[1])


@pytest.mark.parametrize("file, content", [
    ("model.safetensors", b"\x40" + b"\x00" * 7 + b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'),
    ("config.json", b'{"model_type": "llama", "hidden_size": "x"}'),
    ("config.json", b'{"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, '
                    b'"num_key_value_heads": 2, "intermediate_size": 16, "vocab_size": 107}'),  # not its weights
])
def test_a_folder_with_truncated_weights_or_a_wrong_config_is_a_named_error(tiny_folders, tmp_path, file, content):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(tiny_folders[0], folder)
    (folder / file).write_bytes(content)
    with pytest.raises(BadFileError, match=r"damaged: transformers cannot load the model in it .* download") as e:
        load_pair(base=str(folder), post=tiny_folders[1])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, b"GGUF\x03\x00\x00\x00" + b"\x07" * 40,
                                     b"GGUF\x63\x00\x00\x00rest"])
def test_a_random_or_truncated_gguf_is_a_named_error(content, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(BadFileError, match=r"model\.gguf: .*Download the \.gguf file again"):
        load_pair(base=str(path), base_only=True)


def test_the_head_of_a_real_gguf_is_a_named_error(tmp_path, monkeypatch):
    """A download cut short: the demo base's first 64 KiB (where it is in the cache)."""
    real = Path.home() / ".cache" / "post-training-playground" / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not real.is_file():
        pytest.skip("the demo base's GGUF file is not in the cache")
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    with real.open("rb") as f:
        (tmp_path / "cut.gguf").write_bytes(f.read(1 << 16))
    with pytest.raises(BadFileError, match=r"cut\.gguf: it cannot be read as a model"):
        load_pair(base=str(tmp_path / "cut.gguf"), base_only=True)


# the command line -----------------------------------------------------------------------------------------------
def _one_error_line(capsys) -> str:
    """The one `error:` line, last on stderr (transformers' loading bars may come before it), no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line.lower()]
    assert len(errors) == 1 and err[-1] == errors[0] and errors[0].startswith("error: "), err
    assert not any("Traceback" in line for line in err), err
    return errors[0]


def test_cli_bad_sources_exit_2_with_one_error_line(tiny_folders, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    (tmp_path / "random.gguf").write_bytes(bytes(range(200)))
    folder = _broken_config_folder(tiny_folders, tmp_path)
    out = ["--out", str(tmp_path / "out")]
    assert cli.main(["confidence", "--base", str(tmp_path / "random.gguf"), *out]) == 2
    assert "random.gguf" in _one_error_line(capsys)
    assert cli.main(["confidence", "--base", str(folder), "--post", tiny_folders[1], *out]) == 2
    assert "config.json" in _one_error_line(capsys)
    assert cli.main(["confidence", "--post", tiny_folders[1], *out]) == 2
    assert "--post needs --base" in _one_error_line(capsys)


def test_cli_bad_csv_exits_2_with_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "pair_from_args", lambda *a, **k: pytest.fail("the pair was loaded before the data"))
    (tmp_path / "big.csv").write_text("\r".join([*STATEMENTS, "z" * 140_000 + ",1"]))
    assert cli.main(["truthfulness", "--statements", str(tmp_path / "big.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "big.csv: line 6 has a cell longer than 131,072" in _one_error_line(capsys)


def test_cli_base_alone_runs_the_study_on_that_model(tiny_folders, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    (tmp_path / "h.txt").write_text("\n".join(f"w{i} w{i + 1} the cat" for i in range(10)))
    (tmp_path / "n.txt").write_text("\n".join(f"w{i + 40} w{i + 41} a dog" for i in range(10)))
    argv = ["--base", tiny_folders[0], "--out", str(tmp_path / "out"), "--harmful", str(tmp_path / "h.txt"),
            "--harmless", str(tmp_path / "n.txt"), "--refusal-tokens", "w1,w2", "--n-val", "2", "--n-test", "2",
            "--max-new-tokens", "2", "--positions=-1", "--layer-step", "2"]
    assert cli.main(["refusal", *argv]) == 0
    assert "the study runs on the base model alone" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "out" / "scores.csv")["model"]) == {"base"}
    assert cli.main(["diffing", *argv[:4]]) == 2
    assert "compares two models" in _one_error_line(capsys)


def test_cli_base_alone_is_that_model_alone(tiny_folders):
    """The README's `--base SOURCE [--post SOURCE]`: --base alone runs the study on that one model."""
    from analyses import find_study

    parsed = cli.study_parser(find_study("confidence")).parse_args(["--base", tiny_folders[0], "--out", "x"])
    pair = cli.pair_from_args(parsed)
    assert pair.post is None and pair.folders == {"base": Path(tiny_folders[0])}


# direction files and control vectors ----------------------------------------------------------------------------
def test_a_direction_file_whose_resid_norms_has_the_wrong_shape_is_a_named_error(tmp_path):
    meta = {"direction": json.dumps({"model": "m", "dataset": "d", "dataset_hash": "h"})}
    for norms in (torch.ones(2), torch.ones(3, 1), torch.ones(())):
        data = save({"vectors": torch.randn(3, 4), "resid_norms": norms}, metadata=meta)
        with pytest.raises(InvalidInputError, match=r"mine\.safetensors: 'resid_norms' has shape"):
            Direction.from_bytes(data, "mine.safetensors")
    (tmp_path / "d.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{broken")
    with pytest.raises(InvalidInputError, match=r"d\.safetensors is not a direction file"):
        Direction.load(tmp_path / "d.safetensors")


def _control_vector(tensors: dict[str, np.ndarray]) -> bytes:
    writer = _MemoryWriter("controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    return writer.buffer.getvalue()


V = np.ones(4, dtype=np.float32)


@pytest.mark.parametrize("tensors, match", [
    ({"direction.-100": V}, "'direction.-100' is not direction.N"),
    ({"direction.-3": V}, "'direction.-3' is not direction.N"),  # once silently placed at layer 1
    ({"direction.0": V}, "'direction.0' is not direction.N"),
    ({"direction.3": V, "direction.03": V}, "two tensors steer llama.cpp layer 3"),
    ({"direction.2": np.ones((2, 4), dtype=np.float32)}, r"shape \[4, 2\], not a non-empty 1-D float32"),
    ({"direction.2": V.astype(np.float16)}, "is F16"),
    ({"direction.2": V, "direction.3": V[:3]}, "different lengths"),
])
def test_control_vectors_llama_cpp_would_refuse_are_named_errors(tensors, match):
    with pytest.raises(BadFileError, match=match):
        from_control_vector(_control_vector(tensors), n_layers=8, name="cv.gguf")


def test_a_good_control_vector_still_reads():
    direction = from_control_vector(_control_vector({"direction.1": V, "direction.04": 2 * V}), 8, "cv.gguf")
    assert direction.vectors[2].tolist() == V.tolist() and direction.vectors[5].tolist() == (2 * V).tolist()
    assert float(direction.vectors[[0, 1, 3, 4, 6, 7]].abs().sum()) == 0.0


# refusal positions ----------------------------------------------------------------------------------------------
def test_refusal_positions_past_the_shortest_prompt_are_refused_before_any_work(tiny_folders, monkeypatch):
    import analyses.refusal.compute as compute
    from analyses.refusal import Config, split_lists

    monkeypatch.setattr(compute, "candidate_directions", lambda *a, **k: pytest.fail("ran before checking"))
    pair = load_pair(base=tiny_folders[0], post=tiny_folders[1])
    data = split_lists([f"w{i} the cat" for i in range(10)], [f"w{i + 40} a dog" for i in range(10)])
    with pytest.raises(InvalidInputError, match=r"Token position -999 .* choose a position from -1 to -\d+"):
        compute.run(pair, Config(positions=(-2, -999), refusal_tokens=("w1",), n_val=2, n_test=2), data=data)
    with pytest.raises(InvalidInputError, match="-999"):
        compute.work(pair, Config(positions=(-999,), refusal_tokens=("w1",)), data=data)


def test_named_errors_are_steering_errors():
    assert issubclass(BadFileError, InvalidInputError) and issubclass(BadFileError, SteeringError)



def test_the_command_as_typed_exits_2_with_one_error_line(tmp_path):
    """`python -m analyses` in its own process: --post without --base once exited 1 with no `error:` line."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PLAYGROUND_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "analyses", "confidence", "--post", "x", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --post needs --base: give --base SOURCE --post SOURCE, or "
                                                "--pair NAME."]
