"""What the refusal study's command line has beyond its Config: the user's own two instruction lists
(--harmful FILE --harmless FILE, one instruction a line or a CSV with a 'prompt' column), and the selected
directions, the transfer table and the timings printed as a summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from steering.errors import InvalidInputError

from ..contrast_sets import decode_upload, parse_prompt_list
from ..study import CliExtras
from .data import RefusalData, split_lists


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--harmful", type=Path, help="your harmful instructions (one per line, or CSV with 'prompt')")
    group.add_argument("--harmless", type=Path, help="your harmless instructions (with --harmful)")


def read_lists(harmful: Path, harmless: Path) -> RefusalData:
    """The two files' instructions, split 60/20/20 like the built-in sets."""
    lists = [parse_prompt_list(decode_upload(p.read_bytes(), p.name), p.name, csv_file=p.suffix.lower() == ".csv")
             for p in (harmful, harmless)]
    return split_lists(*lists)


def data_from_args(args: argparse.Namespace) -> RefusalData | None:
    """The user's lists, or None for the built-in sets."""
    if bool(args.harmful) != bool(args.harmless):
        raise InvalidInputError("Give both --harmful and --harmless, or neither.")
    return read_lists(args.harmful, args.harmless) if args.harmful else None


def summary(result) -> str:
    cols = ["model", "transfer", "intervention", "prompts", "n", "refusal_score", "refusal_rate"]
    return "\n".join([
        f"ablation: {result.ablation}; refusal tokens: {result.refusal_tokens}; positions: {result.positions}; "
        f"data: {result.data_sizes}",
        "selected directions:", result.selected.to_string(index=False),
        "test split:", result.scores[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"),
        "timings (s):", result.timings.to_string(index=False, float_format=lambda x: f"{x:.1f}"),
    ])


def print_summary(args: argparse.Namespace, pair, result, out: Path) -> None:
    """The old command's summary on stdout (the tables themselves are in `out`)."""
    print(summary(result))


CLI = CliExtras(add_options=add_options, data=data_from_args, write=print_summary)
