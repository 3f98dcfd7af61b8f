"""The lab's options beyond its settings: `--into-shipped` recomputes only the --studies given along the whole road
and merges them into the shipped road (analyses.lab.update)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from steering.errors import InvalidInputError

from ..study import CliExtras


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--into-shipped", action="store_true",
                       help="demo pair: recompute only the --studies given, at every stage, and merge them into "
                            "the shipped road (the other studies' cells kept, once checked current); stores and "
                            "ships the whole road")


def check(args: argparse.Namespace) -> None:
    if args.into_shipped and (args.base or args.pair != "demo" or args.ship or not args.studies or args.stages):
        raise InvalidInputError("--into-shipped is for the demo pair with --studies and every stage, without --ship "
                                "(it ships the merged road itself).")


def write(args: argparse.Namespace, pair, result, out: Path) -> None:
    if not args.into_shipped:
        return
    from ..cli import config_from_args, headline_text, write_outputs
    from ..store import ResultStore, run_cached, ship
    from . import LAB
    from .update import merge_into_shipped

    # the part the CLI just computed, read back with its manifest from the store where run_cached put it
    config = config_from_args(args, LAB.Config)
    part = run_cached(LAB, pair, config, store=ResultStore(), notice=lambda m: None)
    command = shlex.join(["python", "-m", "analyses", "lab", "--pair", "demo", "--studies", *config.studies,
                          *([] if args.transfer else ["--no-transfer"]), "--into-shipped", "--out", str(out)])
    road = merge_into_shipped(LAB, pair, part, command)
    write_outputs(LAB, road, out)
    print(f"merged into the shipped road: {ship(LAB, road)}\nThe road, headline:\n"
          f"{headline_text(dict(LAB.headline(road.result)))}\n(the recomputed part's follows)")


def data(args: argparse.Namespace):
    check(args)
    return None


CLI = CliExtras(add_options=add_options, data=data, write=write)
