"""What the truthfulness page draws while the study runs: the probe accuracy per layer as soon as the probes are
fit, before the interventions are scored."""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from .charts import probe_accuracy


def partial_chart(key: str, value: Any) -> alt.Chart | None:
    """The chart of one partial result the run hands on (`probes`: the probe table), or None for other keys."""
    if key == "probes" and isinstance(value, pd.DataFrame) and len(value):
        return probe_accuracy(value).properties(title="Probe accuracy per layer (interventions still running)")
    return None
