"""Every study's default run against its forward-pass floor, measured side by side in one run on one pair.

    python -m bench.studies [--pair demo] [--studies refusal,knowledge]

For each study of the registry: the floor (bench/<study>.py `floor(pair, config, data)`: the plain batched passes
the result strictly needs, counted as its docstring says), then the study's own `run` on the default config and
the built-in data (uncached), and one line

    STUDY <name> seconds=<s> floor_seconds=<f> ratio=<s/f>

Each model runs one short pass first (warm_up). The load average is printed before and after: on a busy machine
both times grow, and only the ratio means much."""
from __future__ import annotations

import argparse
import importlib
import os
import time

import torch

from analyses import STUDY_NAMES, find_study
from steering import load_pair


def measure(pair, name: str) -> tuple[float, float | None]:
    """(seconds of the study's default run, seconds of its floor or None where the bench has no floor)."""
    study = find_study(name)
    config = study.Config()
    data = study.default_data(pair, config)
    floor_fn = getattr(importlib.import_module(f"bench.{name}"), "floor", None)
    floor = floor_fn(pair, config, data) if floor_fn else None
    start = time.perf_counter()
    study.run(pair, config, data=data)
    return time.perf_counter() - start, floor


def warm_up(pair) -> None:
    """One short pass of each model, logits included: the first pass after loading pays for touching the weights
    (measured: a first floor 1.7x its rerun), which is loading, not the study."""
    ids = pair.tokenizer("The capital of France is", return_tensors="pt").input_ids
    for model in pair.models().values():
        model(input_ids=ids.to(model.device))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="demo")
    parser.add_argument("--studies", default=",".join(STUDY_NAMES), help="comma-separated study names")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    pair = load_pair(args.pair)
    warm_up(pair)
    print(f"pair {args.pair} loaded in {time.perf_counter() - start:.1f} s; {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for name in args.studies.split(","):
        seconds, floor = measure(pair, name.strip())
        if floor is None:
            print(f"STUDY {name} seconds={seconds:.1f} floor_seconds=n/a ratio=n/a", flush=True)
        else:
            print(f"STUDY {name} seconds={seconds:.1f} floor_seconds={floor:.1f} ratio={seconds / floor:.2f}",
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
