"""app_pages/ui/study_page.py's headline and downloads: a missing cell is a dash, not "None", and every download
button says which file it is."""
from streamlit.testing.v1 import AppTest


def _page() -> None:
    from dataclasses import dataclass
    from types import SimpleNamespace

    import pandas as pd

    from app_pages.ui.study_page import downloads, headline

    @dataclass
    class Result:
        candidate_directions_base: pd.DataFrame
        candidate_directions_post: pd.DataFrame

    table = pd.DataFrame({"layer": [0, 1]})
    study = SimpleNamespace(name="refusal", headline=lambda r: {"refusal_rate/base": 0.25, "kl/post": 37640.5,
                                                                "cosine": 0.5})
    result = Result(table, table)
    headline(study, result)
    downloads(study, result)


def test_a_missing_headline_cell_is_a_dash_and_download_labels_differ():
    from conftest import headline_cells

    at = AppTest.from_function(_page, default_timeout=60).run()
    assert not at.exception
    cells = headline_cells(at)  # the page tests read the numbers themselves, unchanged by the display format
    assert cells == {"refusal_rate/base": 0.25, "kl/post": 37640.5, "cosine": 0.5}
    shown = _display_values(at.dataframe[0])
    assert shown.loc["refusal rate"].tolist() == ["0.25", "—", "—"] and shown.loc["kl", "post"] == "37,640"
    labels = [b.label for b in at.get("download_button")]
    assert len(set(labels)) == len(labels) == 3
    assert "Candidate directions base (.csv)" in labels and not any(label.startswith("refusal_") for label in labels)


def _display_values(frame):
    """The cells as the browser shows them (the Styler's display values, sent beside the numbers)."""
    import pyarrow as pa

    return pa.ipc.open_stream(frame.proto.arrow_data.styler.display_values).read_pandas()
