"""python -m steering.posttrain dpo: preference-tune the demo pair's SFT model (DPO), ~25 min on 2 cores.

Reads the preference pairs of assets/demo/dpo (python -m steering.posttrain.build_dpo_data), trains a LoRA on the
merged SFT model with the SFT model as the reference, and writes the final adapter, the checkpoints and the
training log to --out (default assets/demo/dpo), where they load as demo@dpo and demo@dpo-stepN."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from .build_dpo_data import DEFAULT_OUT
from .dpo import SFT_BASE_NAME, DPOResult, DPOTrainConfig, read_rows, train_dpo, write_dpo_log


def run_dpo(config: DPOTrainConfig, out_dir: Path, data_dir: Path = DEFAULT_OUT, pair_name: str = "demo",
            base_name: str = SFT_BASE_NAME, report=print) -> DPOResult:
    """Train the DPO stage of a registered pair on top of its post-trained (SFT) model and write its log."""
    from .. import load_pair

    pair = load_pair(pair_name, dtype="float32", device="cpu", report=report)
    sft_model, tokenizer, end_of_turn = pair.post, pair.tokenizer, pair.spec.end_of_turn
    del pair  # the base is not needed: the reference is the SFT model with the adapter disabled
    train_rows, val_rows = read_rows(data_dir / "train.jsonl"), read_rows(data_dir / "val.jsonl")
    report(f"{len(train_rows)} training and {len(val_rows)} validation pairs; {config.steps} steps of "
           f"{config.batch_size} pairs; checkpoints at steps {config.checkpoint_steps}")

    def step_line(entry: dict) -> None:
        val = (f"  val loss {entry['val_loss']:.3f}  val margin {entry['val_reward_margin']:.2f}"
               if "val_loss" in entry else "")
        report(f"step {entry['step']:4d}/{config.steps}  loss {entry.get('loss', float('nan')):.3f}  "
               f"margin {entry.get('reward_margin', float('nan')):.2f}  {entry['seconds']:7.1f} s{val}")

    _, result = train_dpo(sft_model, tokenizer, train_rows, val_rows, config, end_of_turn=end_of_turn or "",
                          out_dir=out_dir, base_name=base_name, report=step_line)
    write_dpo_log(result, config, out_dir / "training_log",
                  {"reference": base_name, "torch_threads": torch.get_num_threads(),
                   "train_pairs": len(train_rows), "val_pairs": len(val_rows)})
    report(f"adapter written to {out_dir / 'adapter'}; log in {out_dir / 'training_log.csv'}")
    return result


def main(argv: list[str] | None = None) -> None:
    defaults = DPOTrainConfig()
    parser = argparse.ArgumentParser(prog="python -m steering.posttrain dpo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="preference pairs per step")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT, help="folder of train.jsonl and val.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the adapter, checkpoints and log go")
    parser.add_argument("--evaluate", action="store_true",
                        help="instead of training: the DPO model against the SFT on the held-out sets, into "
                             "--out/eval.json and eval_samples.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="with --evaluate: at most this many items per set")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.evaluate:
        from .evaluate import evaluate_dpo

        evaluate_dpo(args.out, limit=args.limit)
        return
    config = DPOTrainConfig(steps=args.steps, batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
                            seed=args.seed)
    run_dpo(config, args.out, args.data)
