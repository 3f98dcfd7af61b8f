"""The study contract (issue 29): a sixth study is one package laid out as analyses/study.py says, built by the same
helper (`study_of`), its name in the registry, and a page. With no other edit it appears in the command line, the
app's navigation and landing page, and the lab's timeline; the page and the CLI refuse a bad setting with the
record's own check, before any work."""
import json
import sys
import textwrap
from pathlib import Path

import pytest
import test_lab

import analyses
from app_pages.ui.pair_picker import PairRequest

ROOT = Path(__file__).resolve().parent.parent
tiny_road = test_lab.tiny_road  # the fixture: a tiny pair 'tiny' with SFT and DPO checkpoints

PACKAGE = {
    "config.py": '''
        from dataclasses import dataclass

        from analyses.study import setting
        from steering.errors import InvalidInputError
        from steering.model_view import ModelView


        @dataclass(frozen=True)
        class Config:
            scale: float = setting(1.0, "multiplies every norm", above=0)
            rows: int = setting(4, "rows of the unembedding read", at_least=1)


        def check(config, pair=None, data=None):
            if pair is not None:
                vocab = ModelView.of(pair.base).unembedding.weight.shape[0]
                if config.rows > vocab:
                    raise InvalidInputError(f"rows {config.rows} is more than the vocabulary ({vocab} tokens).")
        ''',
    "data.py": '''
        def default_data(pair, config):
            return ("the cat is w1 .", "the dog is w2 .")


        def data_hash(data):
            return "|".join(data)
        ''',
    "compute.py": '''
        from dataclasses import dataclass

        import pandas as pd
        import torch


        @dataclass
        class Result:
            norms: pd.DataFrame  # model, text, norm


        @torch.no_grad()
        def run(pair, config, *, data=None, progress=None):
            from .data import default_data

            rows = []
            for role, model in pair.models().items():
                for text in data or default_data(pair, config):
                    ids = pair.tokenizer(text, return_tensors="pt").input_ids
                    last = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
                    rows.append({"model": role, "text": text, "norm": config.scale * float(last.norm(dim=-1).mean())})
            return Result(pd.DataFrame(rows))
        ''',
    "summary.py": '''
        def headline(result):
            return {f"mean_norm/{model}": float(rows["norm"].mean()) for model, rows in result.norms.groupby("model")}
        ''',
    "charts.py": '''
        import altair as alt


        def charts(result):
            return {"norms": alt.Chart(result.norms).mark_bar().encode(x="model:N", y="norm:Q")}
        ''',
    "__init__.py": '''
        from analyses.study import InLab, study_of

        STUDY = study_of(__name__, title="Sixth study", version="sixth@1", page={page!r}, icon=":material/science:",
                         about="A study defined inside a test. It reads the norm of each model's last hidden state.",
                         lab=InLab(series=(("mean_norm", "post"),), caption="The sixth study along the road.",
                                   seconds=1.0))
        ''',
}

PAGE = '''
    import streamlit as st

    from analyses import find_study
    from app_pages.ui.pair_picker import current_pair, sidebar
    from app_pages.ui.study_page import headline, study_result

    STUDY = find_study("sixth")
    sidebar()
    st.title(STUDY.title)
    pair = current_pair()
    if pair is None:
        st.stop()
    stored = study_result(STUDY, pair)
    if stored is None:
        st.stop()
    headline(STUDY, stored.result)
    '''


@pytest.fixture
def sixth(tmp_path, monkeypatch):
    """The package `analyses.sixth`, written here, importable as one of analyses' own, and its name in the registry:
    the only edit a new study makes outside its package and page."""
    root = tmp_path / "extra"
    page = tmp_path / "sixth_page.py"
    page.write_text(textwrap.dedent(PAGE))
    (root / "sixth").mkdir(parents=True)
    for name, source in PACKAGE.items():
        (root / "sixth" / name).write_text(textwrap.dedent(source).format(page=str(page)) if name == "__init__.py"
                                           else textwrap.dedent(source))
    monkeypatch.setattr(analyses, "__path__", [*analyses.__path__, str(root)])
    monkeypatch.setattr(analyses, "STUDY_NAMES", (*analyses.STUDY_NAMES, "sixth"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    yield page
    for module in [m for m in sys.modules if m == "analyses.sixth" or m.startswith("analyses.sixth.")]:
        del sys.modules[module]
    if hasattr(analyses, "sixth"):
        delattr(analyses, "sixth")


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    from tiny import save_tiny_pair

    return save_tiny_pair(tmp_path_factory.mktemp("sixth-pair"))


def test_the_helper_builds_the_record_from_the_package(sixth):
    study = analyses.find_study("sixth")
    assert study.name == "sixth" and study.version == "sixth@1" and study.page == str(sixth)
    assert [s.name for s in analyses.RECORDS][-2:] == ["sixth", "lab"]  # the studies, then the lab
    assert study.check_inputs is not None and study.lab.series == (("mean_norm", "post"),)
    assert study.partial_chart is None and study.work is None  # optional parts it does not have


def test_it_is_a_command_of_the_cli_and_the_cli_checks_it_with_its_record(sixth, pair_dirs, tmp_path, capsys):
    from analyses.cli import main

    base, post = (str(p) for p in pair_dirs)
    with pytest.raises(SystemExit):
        main(["sixth", "--help"])
    assert "A study defined inside a test." in capsys.readouterr().out
    assert main(["sixth", "--base", base, "--post", post, "--out", str(tmp_path / "out"), "--scale", "2"]) == 0
    written = json.loads((tmp_path / "out" / "headline.json").read_text())
    assert set(written) == {"mean_norm/base", "mean_norm/post"} and written["mean_norm/base"] > 0
    assert (tmp_path / "out" / "norms.csv").exists() and (tmp_path / "out" / "norms.html").exists()
    capsys.readouterr()
    assert main(["sixth", "--base", base, "--post", post, "--out", str(tmp_path / "bad"), "--rows", "100000"]) == 2
    assert "error: rows 100000 is more than the vocabulary" in capsys.readouterr().err


def test_it_is_in_the_apps_navigation_and_on_the_landing_page(sixth, pair_dirs):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["pair_request"] = PairRequest(None, base=pair_dirs[0], post=pair_dirs[1])
    at.run()
    assert not at.exception
    assert any("Sixth study" in link.proto.label for link in at.get("page_link"))  # the landing page's link
    at = at.switch_page(str(sixth)).run()  # only a page of the app's navigation can be switched to
    assert not at.exception and [t.value for t in at.title] == ["Sixth study"]
    at.number_input(key="sixth_rows").set_value(100000)
    at = [b for b in at.button if b.label == "Run"][0].click().run()
    assert not at.exception and any("rows 100000 is more than the vocabulary" in e.value for e in at.error)
    at.number_input(key="sixth_rows").set_value(4)
    at = [b for b in at.button if b.label == "Run"][0].click().run()
    assert not at.exception and not at.error
    assert any(t.value == "Headline" for t in at.subheader)


def test_it_is_on_the_labs_timeline(sixth, tiny_road, tmp_path):
    from analyses.lab import LAB, Config, in_lab, run
    from analyses.store import ResultStore
    from steering import load_pair

    result = run(load_pair("tiny", base_only=True), Config(studies=("sixth",), transfer=False),
                 store=ResultStore(tmp_path / "store"))
    rows = result.timeline[result.timeline["study"] == "sixth"]
    assert list(dict.fromkeys(rows["stage"])) == ["base", "step2", "sft", "dpo-step1", "dpo"]
    assert set(zip(rows["metric"], rows["model"])) == {("mean_norm", "base"), ("mean_norm", "post")}
    assert "timeline_sixth" in LAB.charts(result) and in_lab("sixth").caption == "The sixth study along the road."
    assert result.settings == {"sixth": {"scale": 1.0, "rows": 4}}


def test_a_study_that_names_no_lab_series_still_gets_its_panel():
    """Its panel draws every headline number (a registry entry without lab data is never silently left out)."""
    import pandas as pd

    from analyses.lab.charts import panel, panel_rows

    timeline = pd.DataFrame([{"stage": s, "step": step, "phase": phase, "study": "seventh", "metric": m,
                              "model": "post", "value": step / 10 + i}
                             for step, (s, phase) in enumerate([("base", "base"), ("sft", "sft"), ("dpo", "dpo")])
                             for i, m in enumerate(("a", "b"))])
    assert len(panel_rows(timeline, "seventh")) == len(timeline)
    assert panel(timeline, "seventh") is not None
