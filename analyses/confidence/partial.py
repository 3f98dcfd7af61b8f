"""The confidence study's partial results, drawn while it runs: the neurons' scores once weighed, and each ablated
neuron's effect as it comes (the same charts as the final ones, on the rows so far)."""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from . import charts


def partial_chart(key: str, table: Any) -> alt.Chart | None:
    """The chart of a partial table that compute.run hands to Steps.partial ("neurons", "ablation"), or None."""
    if not isinstance(table, pd.DataFrame) or table.empty:
        return None
    if key == "ablation":
        return charts.ablation(table)
    if key == "neurons":
        return charts.scatter(table)
    return None
