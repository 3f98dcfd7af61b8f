"""app_pages/ui/names.py: the models are named by their stages where a pair of the demo road is loaded."""
import re
from pathlib import Path

import pandas as pd
import pytest

from analyses import STUDY_NAMES, find_study
from analyses.store import SHIPPED_ROOT, read_manifest
from analyses.store_entry import read_result
from app_pages.ui.names import named_chart, named_table, role_names


def test_a_registered_pair_is_base_and_post_trained():
    assert role_names("demo") == {"base": "Base", "post": "Post-trained"}


def test_a_road_pair_is_named_by_its_stages():
    assert role_names("demo@step108..dpo") == {"base": "step108 (as base)", "post": "dpo"}
    assert role_names("demo@step36") == {"base": "Base", "post": "Post-trained, step36"}


def _picker() -> None:
    import streamlit as st

    from app_pages.ui.pair_picker import _pick

    st.session_state["picked"] = _pick().name


def test_the_picker_opens_on_the_loaded_road_pair_not_on_demo():
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import TWO_STAGES, PairRequest

    at = AppTest.from_function(_picker, default_timeout=60)
    at.session_state["pair_loaded_request"] = PairRequest("demo@step108..dpo")
    at.run()
    assert not at.exception
    assert at.selectbox[0].value == TWO_STAGES
    assert [s.value for s in at.selectbox[1:3]] == ["step108", "dpo"]
    assert at.session_state["picked"] == "demo@step108..dpo"


ROLES = {"base", "post", "Base", "Post-trained", "post-trained"}


def _strings(node, key=None):
    """Every string value of a Vega-Lite spec but field names, with the key it sits under."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str) and key != "field":
        yield key, node


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_every_shipped_chart_names_the_stages_of_a_road_pair(name):
    study = find_study(name)
    folder = SHIPPED_ROOT / study.name
    result = read_result(folder, study, read_manifest(folder)["key"]).result
    for chart_name, chart in study.charts(result).items():
        assert named_chart(chart, "demo") is chart  # the registered pair: untouched
        spec = named_chart(chart, "demo@step108..dpo").to_dict()
        left = {(k, s) for k, s in _strings(spec) if s in ROLES or re.search(r"\b(base|post)(→|->)", s)}
        assert not left, (chart_name, sorted(left)[:5])
        data = [row for rows in spec.get("datasets", {}).values() for row in rows]
        if any(row.get("model") in ("base", "post", "Base", "Post-trained") for rows in
               chart.to_dict().get("datasets", {}).values() for row in rows):
            assert {row.get("model") for row in data} & {"step108", "step108 (as base)", "dpo"}, chart_name


def test_a_table_names_the_stages_in_its_cells_and_columns():
    table = pd.DataFrame({"model": ["base", "post"], "direction": ["base→post", "post→base"], "base": [1, 2]})
    named = named_table(table, "demo@step108..dpo")
    assert named["model"].tolist() == ["step108", "dpo"]
    assert named["direction"].tolist() == ["step108→dpo", "dpo→step108"]
    assert "step108" in named.columns and table["model"].tolist() == ["base", "post"]  # the original untouched
    assert named_table(table, "demo") is table


@pytest.mark.demo
def test_a_study_page_on_two_stages_names_them_and_estimates_a_run():
    """No shipped result is the road pair's own: the page says how long a run takes (from the demo pair's)."""
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "5_Confidence.py"),
                           default_timeout=600)
    at.session_state["pair_request"] = PairRequest("demo@step108..dpo")
    at.run()
    assert not at.exception and not at.error
    assert any("A run with the default settings takes about" in c.value and "demo pair's shipped result" in c.value
               for c in at.caption)
    assert any("demo@step108..dpo" in m.value for m in at.sidebar.markdown)  # the sidebar says what is loaded


def _start_from_address() -> None:
    import streamlit as st

    from app_pages.ui.pair_picker import _from_address

    st.session_state["started_on"] = _from_address()


@pytest.mark.parametrize("address, starts_on, note", [
    ("demo@step108..dpo", "demo@step108..dpo", None),  # a reload keeps the road pair the address names
    ("demo", "demo", None),
    ("custom", "demo", "a pair of your own sources"),  # cannot be restored: the demo pair, saying so
    ("nonsense", "demo", "'nonsense', which is not a registered pair"),
])
def test_a_reload_starts_on_the_pair_in_the_address_or_says_why_not(address, starts_on, note):
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import FROM_ADDRESS_NOTE

    at = AppTest.from_function(_start_from_address, default_timeout=60)
    at.query_params["pair"] = address
    at.run()
    assert not at.exception
    assert at.session_state["started_on"].name == starts_on
    if note is None:
        assert FROM_ADDRESS_NOTE not in at.session_state
    else:
        assert note in at.session_state[FROM_ADDRESS_NOTE] and "the demo pair is loaded instead" in \
            at.session_state[FROM_ADDRESS_NOTE]


def test_the_loaded_pair_is_written_to_the_address(open_page):
    at = open_page("5_Confidence.py", timeout=120)
    assert not at.exception
    assert at.query_params["pair"] == "custom"  # the tiny pair is two local folders


@pytest.mark.demo
def test_a_reload_on_an_address_whose_pair_does_not_load_falls_back_to_the_demo_pair_and_says_so():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=600)
    at.query_params["pair"] = "demo@no-such-stage"
    at.run()
    assert not at.exception and not at.sidebar.error
    notes = [w.value for w in at.sidebar.warning if "demo@no-such-stage" in w.value]
    assert len(notes) == 1 and "the demo pair is loaded instead" in notes[0]
    assert at.session_state["pair"].name == "demo" and at.query_params["pair"] == "demo"
