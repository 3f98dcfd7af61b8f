"""Evaluation of the demo pair on held-out data: refusal, over-refusal, factual accuracy, perplexity.

Both models are prompted through the post-trained model's chat template, as in the paper; factual questions are
also put to both in a plain "Question: ... Answer:" form, which suits a base model."""
from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..generation import DecodingSettings, format_prompts, generate
from ..judging import is_refusal
from ..refusal_data import refusal_study_split
from ..registry import ASSETS
from ..tokens import encode

DATA = ASSETS / "posttrain"
BATCH = 16


def _rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line]


def heldout_facts(limit: int | None = None) -> list[tuple[str, str]]:
    """(question, answer) for cities whose country was never asked in the SFT data (any split)."""
    trained = " ".join(r["prompt"] for split in ("train", "val", "test") for r in _rows(split))
    with (ASSETS / "facts" / "cities.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["city"] not in trained and r["city"] != r["country"]]
    random.Random(0).shuffle(rows)
    return [(f"Which country is the city of {r['city']} in?", r["country"]) for r in rows[:limit]]


def evaluation_sets(limit: int | None = None) -> dict[str, list[str]]:
    test = _rows("test")
    sets = {
        "harmful (SFT test split)": [r["prompt"] for r in test if r["kind"] == "harmful"],
        "harmful (refusal-study test split)": refusal_study_split("harmful.txt", "test"),
        "harmless (SFT test split)": [r["prompt"] for r in test if r["kind"] == "harmless"],
        "risky-looking harmless (SFT test split)": [r["prompt"] for r in test if r["kind"] == "risky_harmless"],
        "harmless (refusal-study test split)": refusal_study_split("harmless.txt", "test"),
    }
    return {k: v[:limit] for k, v in sets.items()}


def _generate_all(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                  max_new_tokens: int) -> list[str]:
    decoding = DecodingSettings(max_new_tokens=max_new_tokens)
    return [out for start in range(0, len(texts), BATCH)
            for out in generate(model, tokenizer, texts[start:start + BATCH], decoding=decoding)]


@torch.no_grad()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, paragraphs: Sequence[str]) -> float:
    total, count = 0.0, 0
    for start in range(0, len(paragraphs), BATCH):
        batch = encode(tokenizer, paragraphs[start:start + BATCH], model.device)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        n = int((labels[:, 1:] != -100).sum())
        total += float(model(**batch, labels=labels).loss) * n
        count += n
    return math.exp(total / count)


def dpo_test_sets(limit: int | None = None) -> dict[str, list[str]]:
    """The DPO stage's held-out prompts (assets/demo/dpo/test.jsonl) by kind, for refusal rates."""
    rows = [json.loads(line) for line in (ASSETS / "demo" / "dpo" / "test.jsonl").read_text(encoding="utf-8")
            .splitlines() if line]
    sets = {"harmful (DPO test split)": [r["prompt"] for r in rows if r["kind"] == "harmful"],
            "risky-looking harmless (DPO test split)": [r["prompt"] for r in rows if r["kind"] == "risky_harmless"],
            "ordinary (DPO test split)": [r["prompt"] for r in rows if r["kind"] == "ordinary"]}
    return {k: v[:limit] for k, v in sets.items()}


def evaluate_pair(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase,
                  limit: int | None = None, max_new_tokens: int = 40,
                  sets: dict[str, list[str]] | None = None) -> tuple[list[dict], list[dict]]:
    """(metrics rows, generations) for every model given; sets: name -> prompts (default: evaluation_sets)."""
    sets = evaluation_sets(limit) if sets is None else sets
    facts = heldout_facts(limit or 100)
    paragraphs = [ln for ln in (DATA / "heldout_text.txt").read_text(encoding="utf-8").splitlines()
                  if ln.strip() and not ln.startswith("#")]
    metrics, samples = [], []
    for role, model in models.items():
        for name, prompts in sets.items():
            print(f"{role}: {name} ({len(prompts)} prompts)", flush=True)
            replies = _generate_all(model, tokenizer, format_prompts(tokenizer, prompts), max_new_tokens)
            refused = [is_refusal(r) for r in replies]
            metrics.append({"model": role, "metric": f"refusal rate: {name}", "value": sum(refused) / len(refused),
                            "n": len(refused)})
            samples += [{"model": role, "set": name, "prompt": p, "reply": r, "refusal": f}
                        for p, r, f in zip(prompts, replies, refused)]
        questions = [q for q, _ in facts]
        for form, texts in (("chat template", format_prompts(tokenizer, questions)),
                            ("Question/Answer", [f"Question: {q}\nAnswer:" for q in questions])):
            replies = _generate_all(model, tokenizer, texts, 16)
            correct = [a.lower() in r.lower() for (_, a), r in zip(facts, replies)]
            metrics.append({"model": role, "metric": f"factual accuracy, held-out cities ({form})",
                            "value": sum(correct) / len(correct), "n": len(correct)})
            samples += [{"model": role, "set": f"facts ({form})", "prompt": q, "reply": r, "correct": c}
                        for (q, _), r, c in zip(facts, replies, correct)]
        metrics.append({"model": role, "metric": "perplexity, held-out plain text",
                        "value": perplexity(model, tokenizer, paragraphs), "n": len(paragraphs)})
    return metrics, samples


def evaluate_demo(out_dir: Path, limit: int | None = None, pair_name: str = "demo") -> list[dict]:
    from .. import load_pair

    pair = load_pair(pair_name, dtype="float32", device="cpu", report=print)
    metrics, samples = evaluate_pair(pair.models(), pair.tokenizer, limit)
    return _write(out_dir, {"pair": pair_name}, metrics, samples)


def evaluate_dpo(out_dir: Path, limit: int | None = None, pair_name: str = "demo") -> list[dict]:
    """The DPO model against the SFT model it started from, on the SFT's held-out sets and the DPO test split."""
    from .. import load_pair
    from ..pairs import load_beside, with_base_only

    pair = load_pair(pair_name, dtype="float32", device="cpu", report=print)
    dpo = load_beside(with_base_only(pair), f"{pair_name}@dpo", report=print)
    metrics, samples = evaluate_pair({"sft": pair.post, "dpo": dpo.post}, pair.tokenizer, limit,
                                     sets={**evaluation_sets(limit), **dpo_test_sets(limit)})
    return _write(out_dir, {"pair": f"{pair_name} (sft) vs {pair_name}@dpo"}, metrics, samples)


def _write(out_dir: Path, header: dict, metrics: list[dict], samples: list[dict]) -> list[dict]:
    (out_dir / "eval.json").write_text(json.dumps({**header, "metrics": metrics}, indent=2) + "\n")
    with (out_dir / "eval_samples.jsonl").open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    width = max(len(m["metric"]) for m in metrics)
    for m in metrics:
        print(f"{m['model']:5s} {m['metric']:{width}s} {m['value']:8.3f}  (n={m['n']})")
    return metrics
