"""`python -m analyses.refusal --pair NAME --out DIR`: the refusal study without the app (tables as CSV/JSON,
charts as HTML, each model's selected direction as a direction file the playground loads, progress and a summary
on stdout)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import cli
from .common import PrintProgress
from .contrast_sets import decode_upload, parse_prompt_list
from .refusal import Config, Result, direction_file, run
from .refusal_charts import all_charts
from .refusal_data import builtin_data, split_lists
from .refusal_select import ABLATIONS


def parser() -> argparse.ArgumentParser:
    p = cli.study_parser("python -m analyses.refusal", __doc__, Config, choices={"ablation": ABLATIONS},
                         helps={"ablation": "affine: ACE at the post-instruction and generated tokens (projection "
                                "breaks the demo model); project: Arditi's projection everywhere"})
    p.add_argument("--harmful", type=Path, help="your harmful instructions (one per line, or CSV with 'prompt')")
    p.add_argument("--harmless", type=Path, help="your harmless instructions (with --harmful)")
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
    if bool(args.harmful) != bool(args.harmless):
        raise SystemExit("Give both --harmful and --harmless, or neither.")

    def body() -> None:
        config = cli.config_from_args(args, Config)
        data = builtin_data()
        if args.harmful:
            lists = [parse_prompt_list(decode_upload(p.read_bytes(), p.name), p.name)
                     for p in (args.harmful, args.harmless)]
            data = split_lists(*lists)
        pair = cli.pair_from_args(args)
        if pair.post is None:
            print("Note: this pair has no post-trained model; only the base model is studied (no transfer).")
        start = time.perf_counter()
        result = run(pair, config, data, PrintProgress(), cache=cli.result_cache(args, "refusal"))
        elapsed = time.perf_counter() - start
        cli.write_outputs(result, all_charts(result), args.out)
        for role in result.directions:
            direction_file(result, role, pair.model_id(role), data).save(args.out / f"direction_{role}.safetensors")
        print(summary(result))
        print(f"total {elapsed:.1f} s; tables and charts in {args.out}")

    return cli.exit_code(body)
