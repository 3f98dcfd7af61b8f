"""Refusal-study benchmark on the demo pair, measured in one run.

    python -m bench.refusal [--n-train N] [--n-val 4] [--n-test 8] [--layer-step 2] [--gen-prompts 8] [--new-tokens 8]

1. the whole pipeline (candidate directions for both models, selection on the validation split, every
   model x direction source x intervention on the test split) with the given sizes, computed from scratch
   (the study's run() is uncached), with the time of each step;
2. greedy generation of the same prompts batched (one generate call) against one prompt at a time, printed as
   a ratio (the test step generates every reply in batches).
"""
from __future__ import annotations

import argparse
import time

from analyses.common import PrintProgress
from analyses.refusal import ABLATIONS, Config, run
from analyses.refusal.scores import generate_scored, refusal_token_ids
from steering import load_pair
from steering.generation import format_prompts
from steering.refusal_data import refusal_study_split


def bench_pipeline(pair, config: Config) -> None:
    start = time.perf_counter()
    result = run(pair, config, progress=PrintProgress())
    total = time.perf_counter() - start
    print(f"1. whole pipeline ({config}): {total:.1f} s")
    print(result.timings.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    cols = ["model", "transfer", "intervention", "prompts", "n", "refusal_score", "refusal_rate"]
    print(result.selected.to_string(index=False))
    print(result.scores[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def bench_generation(pair, n: int, new_tokens: int) -> None:
    tok = pair.tokenizer
    texts = format_prompts(tok, refusal_study_split("harmful.txt", "test")[:n])
    ids = refusal_token_ids(tok)
    start = time.perf_counter()
    batched, _ = generate_scored(pair.post, tok, texts, ids, max_new_tokens=new_tokens, batch_size=n)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [generate_scored(pair.post, tok, [t], ids, max_new_tokens=new_tokens)[0][0] for t in texts]
    t_single = time.perf_counter() - start
    same = sum(a == b for a, b in zip(batched, single))
    print(f"2. generation, {n} prompts x {new_tokens} new tokens (post-trained model): batched {t_batched:.1f} s, "
          f"one at a time {t_single:.1f} s: {t_single / t_batched:.2f}x faster batched "
          f"({same}/{n} replies identical)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=None, help="train prompts per side (default: all)")
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--layer-step", type=int, default=1)
    parser.add_argument("--ablation", choices=ABLATIONS, default="affine")
    parser.add_argument("--gen-prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    pair = load_pair("demo")
    bench_generation(pair, args.gen_prompts, args.new_tokens)
    if not args.skip_pipeline:
        bench_pipeline(pair, Config(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                                    layer_step=args.layer_step, ablation=args.ablation))


if __name__ == "__main__":
    main()
