"""What the knowledge page draws while a run works: each traced fact's map as its grids come (compute._trace
hands the grids so far to steps.partial("grids", table), a table shaped like Result.grids)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from .charts import fact_map


def partial_chart(key: str, table: Any):
    """The latest traced fact's residual-stream map (the first component traced when there is no resid), base and
    post-trained side by side; None for other keys or an empty table."""
    if key != "grids" or not isinstance(table, pd.DataFrame) or table.empty:
        return None
    components = list(table["component"].unique())
    component = "resid" if "resid" in components else components[0]
    item = int(table["item"].iloc[-1])
    n_done = table["item"].nunique()
    return fact_map(table, item, component).properties(title=f"Traced fact {n_done} (item {item}), "
                                                              f"{component}: share of the clean output recovered")
