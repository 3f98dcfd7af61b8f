"""Benchmark: the full confidence study on the demo pair, timed stage by stage in one run (no result cache).

    python -m bench.confidence [--max-tokens 512] [--n-questions 200]

Also times one last-layer neuron ablation both ways (the exact shortcut from the clean run's final-norm input vs
a hooked forward pass through the whole model), on the same text, to show what the shortcut saves."""
from __future__ import annotations

import argparse
import time

import torch

from analyses.confidence import Config, heldout_texts, run, summary_text
from analyses.confidence import ablation as abl
from analyses.common import PrintProgress
from steering import load_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=Config.max_tokens)
    parser.add_argument("--n-questions", type=int, default=Config.n_questions)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    pair = load_pair("demo")
    print(f"demo pair loaded in {time.perf_counter() - start:.1f} s")
    config = Config(max_tokens=args.max_tokens, n_questions=args.n_questions)
    start = time.perf_counter()
    result = run(pair, config, data=heldout_texts(), progress=PrintProgress())
    total = time.perf_counter() - start
    print(summary_text(result, total))
    print(f"FULL ANALYSIS (both models, defaults but the options above): {total:.1f} s")

    batches = abl.text_batches(pair.tokenizer, heldout_texts(), args.max_tokens, config.batch_size)
    layer = pair.n_layers - 1
    clean = abl.clean_run(pair.base, batches, layer)
    neuron = result.candidates["base"][0]
    timed = {}
    for shortcut in (True, False):
        start = time.perf_counter()
        abl.ablate_one(pair.base, batches, layer, neuron, clean, shortcut=shortcut)
        timed[shortcut] = time.perf_counter() - start
    print(f"one last-layer ablation over {len(clean.stats['loss'])} tokens: shortcut {timed[True]:.1f} s, "
          f"hooked forward {timed[False]:.1f} s ({timed[False] / timed[True]:.2f}x)")


if __name__ == "__main__":
    main()
