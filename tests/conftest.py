import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_request(tmp_path_factory):
    """The pages' tiny pair, saved once: what the pair picker would hand a page for two local folders."""
    from tiny import save_tiny_pair

    from app_pages.ui.pair_picker import PairRequest

    base, post = save_tiny_pair(tmp_path_factory.mktemp("page-pair"))
    return PairRequest(None, base=base, post=post)


@pytest.fixture
def open_page(tiny_request, tmp_path, monkeypatch):
    """`open_page("3_Refusal.py")`: the page in AppTest, run once on the tiny pair, its results cached under tmp."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))

    def open_(name: str, timeout: float = 180):
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / name), default_timeout=timeout)
        at.session_state["pair_request"] = tiny_request
        return at.run()

    return open_


@pytest.fixture(scope="session")
def demo_pair():
    """The real demo pair, loaded once for the whole run (the shipped results' checks share it)."""
    from steering import load_pair

    return load_pair("demo")


@pytest.fixture(scope="session")
def shipped_result(demo_pair):
    """`shipped_result(STUDY)`: the study's shipped result on the demo pair, which must be current."""
    from analyses.store import shipped

    def current(study):
        found = shipped(study, demo_pair)
        assert found is not None, f"no shipped {study.name} result for this demo pair (another fingerprint?)"
        assert found.reason is None, found.reason
        return found.stored.result

    return current


def headline_cells(at) -> dict[str, object]:
    """The headline table a study page shows (app_pages/ui/study_page.headline), back as the study's flat names:
    {"ece/base": 0.2, "entropy_neuron_iou": 1.0, ...}."""
    import math

    def value(cell):  # a column with a missing measure ("—") reaches the browser as text: numbers written in full
        if not isinstance(cell, str) or cell in ("True", "False"):
            return cell == "True" if isinstance(cell, str) else cell
        try:
            number = float(cell)
        except ValueError:
            return cell
        return int(number) if number.is_integer() and "." not in cell and "e" not in cell else number

    for frame in at.dataframe:
        table = frame.value
        if table.index.name == "measure":
            return {(m.replace(" ", "_") + ("" if who == "pair" else f"/{who}")): value(v)
                    for m, row in table.iterrows() for who, v in row.items()
                    if v != "—" and not (isinstance(v, float) and math.isnan(v))}
    raise AssertionError("the page shows no headline table")
