"""Issue 27 in the pages: a broken custom pair in the sidebar, and CSV uploads with bare CR line ends or an over-long
cell, are error elements, never exceptions; a custom base without a post-trained model loads alone."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_files import ROOT, STATEMENTS, tiny_folders  # noqa: F401  (a fixture, found by pytest here)


def _broken_config_folder(tiny_folders, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_folders[0], folder)
    (folder / "config.json").write_text('{"model_type": "llama", ')
    return folder


def test_the_sidebar_shows_a_broken_custom_pair_as_an_error(tiny_folders, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    folder = _broken_config_folder(tiny_folders, tmp_path)
    at = AppTest.from_file(str(ROOT / "app_pages" / "5_Confidence.py"), default_timeout=120)
    at.session_state["pair_request"] = PairRequest(None, base=str(folder), post=tiny_folders[1])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("config.json" in e.value for e in at.error)


def test_the_truthfulness_page_names_an_over_long_cell(open_page):
    at = open_page("2_Truthfulness.py")
    at.selectbox(key="tr_dataset").set_value("your own CSV (statement,label)")
    at.run()
    at.text_area(key="tr_paste").input("\r".join([*STATEMENTS, "q" * 140_000 + ",1"]))
    at = at.run()
    assert not at.exception
    assert at.error and "line 6 has a cell longer than 131,072" in at.error[0].value



def test_the_refusal_page_reads_cr_only_lists_and_names_an_over_long_cell(open_page):
    at = open_page("3_Refusal.py", timeout=180)
    at.radio(key="rf_data").set_value("Your two lists").run()
    at.text_area(key="rf_harmful").input("prompt\r" + "\r".join(f"w{i} w{i + 1} the cat" for i in range(10)))
    at.text_area(key="rf_harmless").input("\r".join(f"w{i + 40} a dog" for i in range(10))).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("harmful" in c.value and "train 6" in c.value for c in at.caption), [c.value for c in at.caption]
    # a typed CSV (its header names the prompt column beside another): the over-long cell is named
    at.text_area(key="rf_harmless").input("prompt,kind\r" + "d" * 140_000 + ",a\rw1 a dog,b").run()
    assert not at.exception
    assert at.error and "harmless list: line 2 has a cell longer than 131,072" in at.error[0].value


def test_the_sidebar_loads_a_custom_base_alone(tiny_folders, tmp_path, monkeypatch):
    """The sidebar's custom sources with the post-trained box left empty: the base alone, as `--base` alone."""
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["pair_request"] = PairRequest(None, base=tiny_folders[0], post=tiny_folders[1])
    at.run()
    at.sidebar.selectbox[0].select(at.sidebar.selectbox[0].options[-1]).run()  # custom sources
    at.sidebar.text_input[0].input(tiny_folders[0])
    next(b for b in at.sidebar.button if b.label == "Load pair").click().run()
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert at.session_state["pair"].post is None
    assert any("Base model only" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("name, match", [("norms.safetensors", "'resid_norms' has shape [2], not [3]"),
                                         ("minus.gguf", "'direction.-100' is not direction.N"),
                                         ("random.gguf", "not a llama.cpp control vector")])
def test_the_playground_names_a_bad_direction_file(open_page, name, match):
    """Once an IndexError in the page (resid_norms one short; a control vector's direction.-100)."""
    import json

    import numpy as np
    import torch
    from safetensors.torch import save

    from steering.control_vector import _MemoryWriter

    if name.startswith("norms"):
        meta = {"direction": json.dumps({"model": "m", "dataset": "d", "dataset_hash": "h"})}
        data = save({"vectors": torch.randn(3, 32), "resid_norms": torch.ones(2)}, metadata=meta)
    elif name.startswith("minus"):
        writer = _MemoryWriter("controlvector")
        writer.add_tensor("direction.-100", np.ones(32, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        data = writer.buffer.getvalue()
    else:
        data = bytes(range(256))
    at = open_page("1_Playground.py", timeout=120)
    at.radio(key="pg_source").set_value("A direction file").run()
    at.file_uploader(key="pg_dir_file").set_value((name, data, "application/octet-stream"))
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and name in at.error[0].value and match in at.error[0].value
