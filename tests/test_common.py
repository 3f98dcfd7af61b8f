"""What every study shares: one progress bar over stages, the table writer (the result store: test_store.py)."""
import json
from dataclasses import dataclass

import pandas as pd

from analyses.common import Steps, write_tables


def test_steps_split_one_bar_over_weighted_stages() -> None:
    seen = []
    steps = Steps(lambda fraction, message: seen.append((round(fraction, 3), message)), {"read": 1, "probe": 3})
    report = steps.stage("read")
    report(1, 2)
    steps.stage("probe", "probing")(3, 3)
    assert seen == [(0.0, "read"), (0.125, "read · 1/2"), (0.25, "probing"), (1.0, "probing · 3/3")]


def test_steps_estimate_the_time_left_from_the_share_done(monkeypatch) -> None:
    clock = iter([100.0, 110.0])  # the run starts at 100 s; a quarter is done 10 s later
    monkeypatch.setattr("analyses.common.time.perf_counter", lambda: next(clock))
    seen = []
    steps = Steps(lambda fraction, message: seen.append(message), {"score": 1})
    report = steps.stage("score", "scoring")
    report(1, 4)
    assert seen[-1] == "scoring · 1/4 · about 30 s left"


def test_partial_results_reach_a_callback_that_takes_them_and_no_other() -> None:
    class Drawing:
        def __init__(self):
            self.partials = []

        def __call__(self, fraction, message):
            pass

        def partial(self, key, value):
            self.partials.append((key, value))

    drawing = Drawing()
    Steps(drawing, {"a": 1}).partial("candidates", [1, 2])
    Steps(lambda fraction, message: None, {"a": 1}).partial("candidates", [1, 2])  # a plain callback: ignored
    assert drawing.partials == [("candidates", [1, 2])]


@dataclass
class _Result:
    per_layer: pd.DataFrame
    best_layer: int
    note: str


def test_write_tables_writes_frames_as_csv_and_scalars_as_json(tmp_path) -> None:
    frame = pd.DataFrame({"layer": [0, 1], "accuracy": [0.5, 0.9]})
    paths = write_tables(_Result(frame, 1, "ok"), tmp_path)
    assert sorted(p.name for p in paths) == ["per_layer.csv", "summary.json"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "per_layer.csv"), frame)
    assert json.loads((tmp_path / "summary.json").read_text()) == {"best_layer": 1, "note": "ok"}
