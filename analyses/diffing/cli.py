"""What the diffing command line has beyond its Config (analyses.cli does the rest): the difference's cosines with
the other studies' stored directions for the pair, read now from the store (not part of the run, see compare.py),
as cosines.csv and cosines.html."""
from __future__ import annotations

from analyses.common import write_charts
from analyses.csv_files import write_table_csv
from analyses.study import CliExtras

from .charts import cosines as cosine_chart
from .compare import compared_with


def write_cosines(args, pair, result, out) -> None:
    found = compared_with(result, pair)
    if found.empty:
        print("No refusal or truth direction is stored for this pair: no cosines.csv (run those studies first).")
        return
    write_table_csv(found, out / "cosines.csv")
    write_charts({"cosines": cosine_chart(found)}, out)


CLI = CliExtras(write=write_cosines)
