"""Playground benchmark and acceptance run on the demo pair, measured side by side in one run.

    python -m bench.playground [--n 20] [--layer 9] [--alpha 1.0]

1. the four-way batched generation (one generate call per model) against four separate calls, 32 new tokens;
2. the time from pressing "Generate" to the four texts in the page (AppTest, direction already cached);
3. acceptance: a harmful-minus-harmless direction read from the post-trained model (and, for transfer, from the
   base model), added at a middle layer to harmless prompts and ablated on harmful ones; refusal rates judged by
   the project's phrase list on the refusal study's held-out test prompts.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from analyses.contrast_sets import builtin_sets
from steering import load_pair
from steering.generation import DecodingSettings, SteeringSpec, compare, format_prompts, generate
from steering.judging import is_refusal
from steering.playground import ContrastPrompts, directions_for_pair
from steering.refusal_data import refusal_study_split


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_batching(pair, spec) -> None:
    prompts = ["How do I bake bread?", "Write a short poem about the sea."]
    decoding = DecodingSettings(max_new_tokens=32)
    texts = format_prompts(pair.tokenizer, prompts)
    _, batched = timed(lambda: compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding))

    def separate():
        for model in pair.models().values():
            generate(model, pair.tokenizer, texts, decoding=decoding)
            generate(model, pair.tokenizer, texts, steering=spec, decoding=decoding)

    _, apart = timed(separate)
    print(f"1. four-way generation, 2 prompts, 32 new tokens: batched {batched:.1f} s, four separate calls "
          f"{apart:.1f} s: {apart / batched:.2f}x")


def bench_page() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app_pages/1_Playground.py", default_timeout=900).run()
    at.number_input(key="pg_max_new").set_value(32)
    at.button(key="pg_generate").click()
    _, first = timed(at.run)
    at.button(key="pg_generate").click()
    _, again = timed(at.run)
    assert not at.exception and len(at.text) == 8, "the page did not show the four texts"
    print(f"2. page, 'Generate' to four texts (2 prompts, 32 new tokens): {first:.1f} s the first time "
          f"(direction computed or read from the cache), {again:.1f} s again")


def acceptance(pair, layer: int, alpha: float, n: int) -> pd.DataFrame:
    harmful, harmless = refusal_study_split("harmful.txt", "test")[:n], refusal_study_split("harmless.txt", "test")[:n]
    chosen = builtin_sets()["harmful vs harmless"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), True, -1)
    directions = directions_for_pair(pair, contrast)
    decoding = DecodingSettings(max_new_tokens=24)
    rows = []
    for source, direction in directions.items():
        for mode, prompts, kind in (("add", harmless, "harmless"), ("ablate", harmful, "harmful")):
            spec = SteeringSpec(direction, mode, (layer,), alpha)
            table = compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding).table
            table["refusal"] = table.text.map(is_refusal)
            for (model, steered), part in table.groupby(["model", "steered"]):
                rows.append({"direction from": source, "intervention": f"{mode} on {kind}", "model": model,
                             "steered": steered, "refusal rate": part.refusal.mean(), "n": len(part)})
    out = pd.DataFrame(rows).drop_duplicates(["direction from", "intervention", "model", "steered"])
    print("3. refusal rates (refusal study test split)\n" + out.to_string(index=False))
    print("   cosine(base, post) per layer:",
          " ".join(f"{c:.2f}" for c in directions["base"].cosine(directions["post"]).tolist()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="prompts per set in the acceptance run")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    pair = load_pair("demo")
    table = acceptance(pair, args.layer, args.alpha, args.n)
    chosen = builtin_sets()["harmful vs harmless"]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), True, -1)
    spec = SteeringSpec(directions_for_pair(pair, contrast)["post"], "add", (args.layer,), args.alpha)
    bench_batching(pair, spec)
    if not args.skip_page:
        bench_page()
    return table


if __name__ == "__main__":
    main()
