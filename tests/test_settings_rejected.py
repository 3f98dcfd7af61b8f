"""Issue 27 §4: settings and inputs that were silently replaced or ignored are refused, each with a named error
and one sentence giving what is allowed: an unknown device or dtype, a statement labelled both true and false, and
the prompt-list header rule (a plain list never loses its first line)."""
from __future__ import annotations

import pytest

from analyses.contrast_sets import parse_prompt_list
from analyses.statements import parse_statement_csv
from steering.errors import InvalidInputError, SettingError
from steering.pairs import LoadSettings, load_pair

ROWS = "a cat is an animal.,1\na dog is a plant.,0\nthe sun is hot.,1\nice is hot.,0\n"


@pytest.mark.parametrize("settings, message", [
    (LoadSettings(device="tpu"), "Unknown device 'tpu': use one of 'auto', 'cpu', 'cuda'."),
    (LoadSettings(dtype="float64"), "Unknown dtype 'float64': use one of 'auto', 'bfloat16', 'float16', 'float32'."),
    (LoadSettings(quantization="3bit"), "Unknown quantization '3bit': use one of 'none', '8bit', '4bit'."),
])
def test_unknown_load_settings_are_refused_with_the_allowed_values(settings, message):
    with pytest.raises(SettingError) as refused:
        settings.resolved()
    assert str(refused.value) == message


def test_load_pair_refuses_an_unknown_device_before_loading(monkeypatch):
    import steering.pairs as pairs

    monkeypatch.setattr(pairs, "prepare_sources", lambda *a, **k: pytest.fail("resolved sources before checking"))
    with pytest.raises(SettingError, match="Unknown device 'tpu'"):
        load_pair("demo", device="tpu")


def test_the_known_settings_still_resolve():
    assert LoadSettings(device="cpu").resolved() == LoadSettings("float32", None, "cpu")
    assert LoadSettings(dtype="bfloat16", quantization="none", device="cpu").resolved().quantization is None


@pytest.mark.parametrize("extra, what", [("a dog is a plant.,1\n", "labelled both true and false"),
                                         ("a cat is an animal.,true\n", "given 2 times")])
def test_a_statement_given_twice_is_refused(extra, what):
    with pytest.raises(InvalidInputError, match=f"the statement '.*' is {what}; give each statement once"):
        parse_statement_csv("statement,label\n" + ROWS + extra, "my.csv")
    assert len(parse_statement_csv("statement,label\n" + ROWS, "my.csv")) == 4


@pytest.mark.parametrize("text, prompts", [
    ("Prompt\nHow do I bake bread?\n", ["Prompt", "How do I bake bread?"]),  # a plain list keeps its first line
    ("prompt\nsecond\n", ["prompt", "second"]),
    ("Text\nanother, one\n", ["Text", "another, one"]),
    ("prompt,category\nHow do I bake bread?,food\n\"Hi, you\",greeting\n", ["How do I bake bread?", "Hi, you"]),
    ("id, Prompt \n1,first\n2,second\n", ["first", "second"]),
    ("one\n\n two \n", ["one", "two"]),
])
def test_only_a_csv_header_naming_the_prompt_column_is_dropped(text, prompts):
    assert parse_prompt_list(text) == prompts


def test_the_cli_reads_a_csv_file_by_its_header_and_a_txt_file_line_by_line(tmp_path):
    from analyses.refusal.cli import read_lists

    prompts = [f"instruction {i}" for i in range(10)]
    (tmp_path / "h.csv").write_text("prompt\n" + "\n".join(prompts))
    (tmp_path / "n.txt").write_text("Prompt\n" + "\n".join(prompts[1:]))
    data = read_lists(tmp_path / "h.csv", tmp_path / "n.txt")
    harmful = [p for split in ("train", "val", "test") for p in data.get("harmful", split)]
    harmless = [p for split in ("train", "val", "test") for p in data.get("harmless", split)]
    assert sorted(harmful) == sorted(prompts) and "Prompt" in harmless and len(harmless) == 10


def test_an_uploaded_csv_file_needs_its_header():
    assert parse_prompt_list("prompt\nfirst\nsecond\n", csv_file=True) == ["first", "second"]
    with pytest.raises(InvalidInputError, match="line 1: a CSV file needs a header row naming its prompt column"):
        parse_prompt_list("first\nsecond\n", "harmful list", csv_file=True)
    with pytest.raises(InvalidInputError, match="line 3: expected 2 columns"):
        parse_prompt_list("prompt,category\na,b\na,b,c\n")
    with pytest.raises(InvalidInputError, match="line 2: .* reads as a CSV header naming the 'text' column"):
        parse_prompt_list("Text, then a summary of it\nanother one\n")  # loud, never a silent misreading


def test_the_page_shows_one_sentence_for_a_nan_alpha(open_page):
    at = open_page("2_Truthfulness.py", timeout=120)
    at.text_input(key="truthfulness_alphas").input("1, nan")
    at = next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "every value of alphas must be a finite number of at least -100 and at most 100, not nan (in 1.0, nan)."]
