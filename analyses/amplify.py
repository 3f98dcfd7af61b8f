"""`python -m analyses.amplify`: amplified differences between two stages of a pair's road, on the command line.

    python -m analyses.amplify --pair demo --a base --b sft --prompts risky --alphas 0,1,2,4
    python -m analyses.amplify --pair demo --a sft --b dpo --prompts dpo-risky --out rates.csv
    python -m analyses.amplify --pair demo --a sft --b dpo --prompts my_prompts.txt --n 8

Prints the refusal rate of the replies at each alpha and a few replies; --out writes every reply as CSV. A bad
setting or file prints one `error:` line and exits 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyses.csv_files import write_table_csv
from steering.errors import InvalidInputError, SteeringError

PROMPT_SETS = {
    "risky": "risky-looking harmless requests (the SFT's test split)",
    "dpo-risky": "risky-looking harmless requests (the DPO's test split)",
    "harmful": "harmful requests (the refusal study's test split)",
    "harmless": "ordinary requests (the refusal study's test split)",
}


def prompt_set(name: str) -> list[str]:
    """A named held-out set (PROMPT_SETS), or a text file of prompts, one a line."""
    from steering.posttrain.evaluate import dpo_test_sets, evaluation_sets
    from steering.refusal_data import refusal_study_split

    if name == "risky":
        return evaluation_sets()["risky-looking harmless (SFT test split)"]
    if name == "dpo-risky":
        return dpo_test_sets()["risky-looking harmless (DPO test split)"]
    if name in ("harmful", "harmless"):
        return refusal_study_split(f"{name}.txt", "test")
    path = Path(name)
    if not path.is_file():
        raise InvalidInputError(f"No prompt set or file {name!r}: use one of {', '.join(PROMPT_SETS)}, or a text "
                                "file with one prompt a line.")
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{name}: cannot be read as UTF-8 text ({e}).") from None
    if not lines:
        raise InvalidInputError(f"{name} holds no prompt: write one prompt a line.")
    return lines


def _alphas(text: str) -> list[float]:
    try:
        return [float(a) for a in text.replace(";", ",").split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"alphas must be numbers separated by commas, not {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analyses.amplify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="demo", help="a registered pair that keeps its stages (default: demo)")
    p.add_argument("--a", default="base", help="stage A, the one subtracted (default: base)")
    p.add_argument("--b", default="sft", help="stage B, the one amplified (default: sft)")
    p.add_argument("--prompts", default="risky", help=f"{', '.join(PROMPT_SETS)}, or a file (one prompt a line)")
    p.add_argument("--alphas", type=_alphas, default=[0.0, 1.0, 2.0, 4.0], help="e.g. 0,1,2,4 (each from 0 to 100)")
    p.add_argument("--n", type=int, default=16, help="the first N prompts of the set (0 = all)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--out", type=Path, help="write every reply with its alpha and whether it is a refusal (CSV)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from steering.amplify import amplification_rates, check_amplification, stage_model
        from steering.generation import DecodingSettings, format_prompts
        from steering.pairs import load_pair
        from steering.stages import pick_stages

        alphas = check_amplification(args.alphas)
        if args.n < 0:
            raise InvalidInputError(f"--n must be at least 0 (0 = all), not {args.n}.")
        decoding = DecodingSettings(max_new_tokens=args.max_new_tokens)
        decoding.generate_kwargs()  # checks the range before any model loads
        prompts = prompt_set(args.prompts)[:args.n or None]
        pick_stages(args.pair, [args.a, args.b])  # unknown stages named before loading
        pair = load_pair(args.pair.partition("@")[0])
        model_a, model_b = stage_model(pair, args.a), stage_model(pair, args.b)
        texts = format_prompts(pair.tokenizer, prompts)
        rates, replies = amplification_rates(model_a, model_b, pair.tokenizer, texts, alphas, decoding=decoding,
                                             progress=lambda d, t: print(f"  {d}/{t} replies", file=sys.stderr))
    except SteeringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    replies["prompt"] = [prompts[i % len(prompts)] for i in range(len(replies))]
    print(f"refusal rate of logits_{args.b} + alpha (logits_{args.b} - logits_{args.a}) on {len(prompts)} prompts "
          f"({args.prompts}), {args.max_new_tokens} greedy tokens:")
    print(rates.to_string(index=False))
    for alpha, part in replies.groupby("alpha", sort=False):
        print(f"alpha {alpha:g}: {part.reply.iloc[0].strip()[:100]!r}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_table_csv(replies, args.out)  # escaped: a reply starting with = is text, not a formula
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
