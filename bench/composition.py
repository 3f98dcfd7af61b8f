"""Several steerings at once and the steering card, on the demo pair, measured side by side in one run.

    python -m bench.composition [--repeats 3] [--tokens 24]

1. what composing costs: compare() (2 prompts, both models, steered and not, greedy) with one steering (the refusal
   direction added at layer 9) and with three (that one, the refusal direction ablated (affine) at layer 9 on the
   prompt, and the truth direction added at layers 6-7 from the first generated token), alternated, best of
   `repeats` each; the ratio three / one, and unsteered / one (the hooks' own cost);
2. the steering card of the three: its size, the time to write it, to read it back (every file checked) and to
   reproduce it, and whether the reproduced tokens are the same as the run's.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analyses.contrast_sets import builtin_sets
from bench.foundation import best_of
from steering import load_pair
from steering.card import card_for, read_card, reproduce, write_card
from steering.composition import Composition, PositionRule
from steering.generation import DecodingSettings, SteeringSpec, compare, format_prompts, generate
from steering.playground import ContrastPrompts, directions_for_pair, mean_residuals, reference_prompts

PROMPTS = ["How do I bake bread?", "Write a short poem about the sea."]


def direction(pair, name: str):
    chosen = builtin_sets()[name]
    contrast = ContrastPrompts(chosen.name, tuple(chosen.positive), tuple(chosen.negative), chosen.chat, -1)
    return directions_for_pair(pair, contrast)["post"], contrast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (the card reuses the last)")
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    pair = load_pair("demo")
    refusal, refusal_contrast = direction(pair, "harmful vs harmless")
    truth, _ = direction(pair, "true vs false")
    texts, position = reference_prompts(pair, refusal_contrast)
    references = mean_residuals(pair, texts, position)
    one = SteeringSpec(refusal, "add", (9,), 0.1)
    three = Composition((
        SteeringSpec(refusal, "ablate", (9,), ablation="affine", positions="prompt"),
        SteeringSpec(truth, "add", (6, 7), 0.05, positions=PositionRule("from", start=0).positions()),
        one,
    ))
    decoding = DecodingSettings(max_new_tokens=args.tokens)
    formatted = format_prompts(pair.tokenizer, PROMPTS)

    def run(steering):
        return compare(pair.models(), pair.tokenizer, PROMPTS, steering, decoding=decoding, references=references)

    def unsteered():
        for model in pair.models().values():
            generate(model, pair.tokenizer, formatted + formatted, decoding=decoding)

    timings, runs = {"one": [], "three": [], "none": []}, []
    for _ in range(args.repeats):  # alternated, so a slower moment of a shared machine falls on all three
        timings["one"].append(best_of(lambda: run(one), 1))
        timings["three"].append(best_of(lambda: runs.append(run(three)), 1))
        timings["none"].append(best_of(unsteered, 1))
    t = {k: min(v) for k, v in timings.items()}
    print(f"1. compare(), {len(PROMPTS)} prompts x 2 models x (steered, not), {args.tokens} new tokens, best of "
          f"{args.repeats}: unsteered {t['none']:.2f} s, one steering {t['one']:.2f} s, three {t['three']:.2f} s; "
          f"three / one {t['three'] / t['one']:.2f}x, one / unsteered {t['one'] / t['none']:.2f}x")

    table = runs[-1].table
    card = card_for(pair, three, PROMPTS, chat=True, decoding=decoding, table=table, references=references,
                    read_from=("post", "post", "post"), labels=("harmful vs harmless", "true vs false",
                                                                "harmful vs harmless"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_card(card, Path(folder) / "card")
        wrote = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (Path(folder) / "card").rglob("*") if p.is_file())
        start = time.perf_counter()
        again = read_card(Path(folder) / "card")
        read = time.perf_counter() - start
    start = time.perf_counter()
    reproduced = reproduce(again, pair).table
    redo = time.perf_counter() - start
    same = reproduced.text.tolist() == table.text.tolist()
    print(f"2. steering card of the three: {size / 1024:.0f} KiB, written in {wrote * 1000:.0f} ms, read back and "
          f"checked in {read * 1000:.0f} ms, reproduced in {redo:.2f} s; same tokens: {same}")
    if not same:
        raise SystemExit("the card did not reproduce the run's tokens")


if __name__ == "__main__":
    main()
