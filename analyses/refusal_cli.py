"""`python -m analyses.refusal --pair NAME --out DIR`: the refusal study without the app (tables as CSV/JSON,
charts as HTML, progress and a summary on stdout)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from steering import SteeringError, load_pair

from .common import PrintProgress, ResultCache, write_charts, write_tables
from .contrast_sets import decode_upload, parse_prompt_list
from .refusal import Config, Result, run
from .refusal_charts import all_charts
from .refusal_data import builtin_data, split_lists
from .refusal_select import ABLATIONS


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analyses.refusal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="demo", help="a registered pair name (default: demo)")
    p.add_argument("--base", help="base model source (folder, .gguf, HF id in the cache) instead of --pair")
    p.add_argument("--post", help="post-trained model source, with --base")
    p.add_argument("--out", required=True, type=Path, help="folder for the tables and charts")
    p.add_argument("--harmful", type=Path, help="your harmful instructions (one per line, or CSV with 'prompt')")
    p.add_argument("--harmless", type=Path, help="your harmless instructions (with --harmful)")
    p.add_argument("--no-cache", action="store_true", help="compute again even if a cached result exists")
    defaults = Config()
    for f in fields(Config):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, tuple):
            conv = _ints if f.name == "positions" else _words
            p.add_argument(flag, type=conv, default=value, help="comma-separated; empty = default")
        elif f.name.startswith("n_"):
            p.add_argument(flag, type=lambda s: None if s == "all" else int(s), default=value,
                           help=f"per side, or 'all' (default {value if value is not None else 'all'})")
        elif f.name == "ablation":
            p.add_argument(flag, choices=ABLATIONS, default=value,
                           help="affine: ACE at post-instruction+generated tokens (default; projection breaks the "
                           "demo model); project: Arditi's projection everywhere")
        else:
            p.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    return p


def summary(result: Result) -> str:
    cols = ["model", "transfer", "intervention", "prompts", "n", "refusal_score", "refusal_rate"]
    return "\n".join([
        f"ablation: {result.ablation}; refusal tokens: {result.refusal_tokens}; positions: {result.positions}; "
        f"data: {result.data_sizes}",
        "selected directions:", result.selected.to_string(index=False),
        "test split:", result.scores[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"),
        "timings (s):", result.timings.to_string(index=False, float_format=lambda x: f"{x:.1f}"),
    ])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    try:
        data = builtin_data()
        if args.harmful or args.harmless:
            if not (args.harmful and args.harmless):
                raise SystemExit("Give both --harmful and --harmless, or neither.")
            lists = [parse_prompt_list(decode_upload(p.read_bytes(), p.name), p.name)
                     for p in (args.harmful, args.harmless)]
            data = split_lists(*lists)
        pair = load_pair(None if args.base else args.pair, base=args.base, post=args.post)
        if pair.post is None:
            print("Note: this pair has no post-trained model; only the base model is studied (no transfer).")
        start = time.perf_counter()
        cache = ResultCache("refusal", root=Path(tempfile.mkdtemp())) if args.no_cache else None
        result = run(pair, config, data, PrintProgress(), cache=cache)
        elapsed = time.perf_counter() - start
    except SteeringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_tables(result, args.out)
    write_charts(all_charts(result), args.out)
    print(summary(result))
    print(f"total {elapsed:.1f} s; tables and charts in {args.out}")
    return 0
