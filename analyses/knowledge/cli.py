"""What the knowledge command line has beyond its Config (analyses.cli does the rest): it prints the study's summary
after its headline."""
from __future__ import annotations

from analyses.study import CliExtras

from .compute import summary_text


def print_summary(args, pair, result, out) -> None:
    print(summary_text(result))


CLI = CliExtras(write=print_summary)
