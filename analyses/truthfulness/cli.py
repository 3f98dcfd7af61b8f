"""What the truthfulness command line has beyond its Config (analyses.cli does the rest):

    python -m analyses truthfulness --pair demo --out DIR [--statements FILE.csv] [--generalisation]

--statements runs the study on the user's own CSV (statement,label); --generalisation also fits probes on several
statement sets and tests each on the held-out one (generalisation.csv and .html, uncached). The CLI prints the
study's summary after its headline."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from analyses.common import PrintProgress, write_charts
from analyses.csv_files import write_table_csv
from analyses.study import CliExtras

from .charts import generalisation as generalisation_chart
from .data import statements_file
from .general import GeneralConfig, generalisation
from .summary import summary_text


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--statements", type=Path, metavar="FILE.csv",
                       help="your own statements: a CSV with columns statement,label (label 1/0 or true/false)")
    group.add_argument("--generalisation", action="store_true",
                       help="also train probes on several statement sets and test each on the held-out one")
    group.add_argument("--general-n-per-set", type=int, default=GeneralConfig.n_per_set,
                       help="statements per set for --generalisation (default: %(default)s)")


def data(args: argparse.Namespace):
    """The user's statements (--statements), or None for the built-in set of --dataset."""
    return statements_file(args.statements) if args.statements is not None else None


def write(args: argparse.Namespace, pair, result, out: Path) -> None:
    """The summary on stdout; with --generalisation the held-out table and its chart."""
    print(summary_text(result))
    if not args.generalisation:
        return
    start = time.perf_counter()
    table = generalisation(pair, GeneralConfig(n_per_set=args.general_n_per_set, batch_size=args.batch_size),
                           PrintProgress())
    out.mkdir(parents=True, exist_ok=True)
    write_table_csv(table, out / "generalisation.csv")
    write_charts({"generalisation": generalisation_chart(table)}, out)
    best = table.loc[table.groupby(["model", "held_out", "method"])["accuracy"].idxmax()]
    print("generalisation (best layer per held-out set):\n" + best.round(3).to_string(index=False))
    print(f"generalisation took {time.perf_counter() - start:.1f} s")


CLI = CliExtras(add_options=add_options, data=data, write=write)
