"""What every study shares: the progress callback and its split over stages, writing tables and charts.

A study's `run()` reports progress as `progress(fraction, message)` with fraction in [0, 1]; the page hands it
st.progress, the CLI a line printer. `Steps` splits that range over a study's stages so each stage reports 0..1
of its own share, with the stage's count and an estimate of the time left in the message.

Partial results: a study hands what it has so far to `steps.partial(key, value)` (for example the candidates
scored so far, as a DataFrame shaped like the final table). A progress callback that has a `partial(key, value)`
method receives them (the page's draws them with the study's `partial_chart`); plain callbacks ignore them."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from .csv_files import write_table_csv
from .study import Progress  # noqa: F401 (re-exported: the studies import it from here)


def no_progress(fraction: float, message: str) -> None:
    """The default progress callback: report nothing."""


class Steps:
    """Split one progress bar over weighted stages: `with steps.stage('probes', 2.0) as report: report(done, total)`.

        steps = Steps(progress, {"directions": 1, "probes": 3})
        report = steps.stage("directions")     # a (done, total) callback for steering's extraction functions
    """

    def __init__(self, progress: Progress | None, weights: dict[str, float]):
        self.progress = progress or no_progress
        self.started = time.perf_counter()
        total = sum(weights.values())
        self.total = total  # the run's whole cost in the weights' unit (a study's `work` reads it)
        self.start: dict[str, float] = {}
        self.share: dict[str, float] = {}
        at = 0.0
        for name, weight in weights.items():
            self.start[name], self.share[name] = at / total, weight / total
            at += weight

    def stage(self, name: str, message: str | None = None) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            fraction = min(self.start[name] + self.share[name] * (done / max(total, 1)), 1.0)
            text = message or name
            if done and total > 1:
                text += f" · {done}/{total}{self._time_left(fraction)}"
            self.progress(fraction, text)

        report(0, 1)
        return report

    def within(self, name: str, label: str) -> Progress:
        """A (fraction, message) callback for work that reports its own progress (a study run inside a stage):
        its fraction fills this stage's share of the bar, its message follows the label."""
        def report(fraction: float, message: str) -> None:
            at = min(self.start[name] + self.share[name] * min(max(fraction, 0.0), 1.0), 1.0)
            self.progress(at, f"{label} · {message}{self._time_left(at)}")

        report(0.0, "starting")
        return report

    def _time_left(self, fraction: float) -> str:
        """' · about 40 s left', from the time so far and the share of the work done (weights are costs)."""
        elapsed = time.perf_counter() - self.started
        if fraction <= 0.02 or fraction >= 1.0 or elapsed < 2.0:
            return ""
        left = elapsed * (1.0 - fraction) / fraction
        return f" · about {left:.0f} s left" if left < 90 else f" · about {left / 60:.0f} min left"

    def partial(self, key: str, value: Any) -> None:
        """Hand a partial result to the progress callback, if it takes them (see the module's docstring)."""
        show_partial(self.progress, key, value)

    def done(self, message: str = "done") -> None:
        self.progress(1.0, message)


def show_partial(progress: Any, key: str, value: Any) -> None:
    """`progress.partial(key, value)` where the callback has that method; nothing otherwise."""
    take = getattr(progress, "partial", None)
    if callable(take):
        take(key, value)


def write_tables(result: Any, out: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Every DataFrame field of a result dataclass as <out>/<field>.csv; fields JSON can hold as they are (numbers,
    strings, lists and dicts of them) go to summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, summary = [], {}
    for f in fields(result):
        if names is not None and f.name not in names:
            continue
        value = getattr(result, f.name)
        if isinstance(value, pd.DataFrame):
            path = out / f"{f.name}.csv"
            write_table_csv(value, path)  # text cells escaped: a spreadsheet must not run an upload's cell
            written.append(path)
        elif _json_plain(value):  # tensors and other objects are left to the study's own writer
            summary[f.name] = value
    if summary:
        path = out / "summary.json"
        path.write_text(json.dumps(summary, indent=2, default=str))
        written.append(path)
    return written


def _json_plain(value: Any) -> bool:
    if isinstance(value, (int, float, str, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _json_plain(v) for k, v in value.items())
    return False


def write_charts(charts: dict[str, Any], out: Path) -> list[Path]:
    """Altair charts as standalone HTML files (they load Vega from a CDN when opened)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in charts.items():
        path = out / f"{name}.html"
        chart.save(str(path))
        paths.append(path)
    return paths


class PrintProgress:
    """The CLI's progress callback: a line when the message changes or another tenth of the work is done."""

    def __init__(self) -> None:
        self.last = (-1.0, "")

    def __call__(self, fraction: float, message: str) -> None:
        if message != self.last[1] or fraction - self.last[0] >= 0.1 or fraction >= 1.0 > self.last[0]:
            print(f"[{fraction:6.1%}] {message}", flush=True)
            self.last = (fraction, message)
