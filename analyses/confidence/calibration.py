"""Confidence and calibration on short-answer questions with known answers.

Each question goes to both models as the same raw few-shot prompt ("Question: ...\\nAnswer: ..." pairs, then the
question and "Answer:"), which suits a base model and which the demo's post-trained model also answers (the model
card measures 86% / 92% on held-out cities in this form). At the next token: confidence = the maximum probability,
correct = the top-1 token is the first token of " <answer>"; also the entropy and the answer token's probability.
Calibration: expected calibration error over equal-width confidence bins, and the reliability curve from
sklearn.calibration.calibration_curve with the same bins."""
from __future__ import annotations

import csv
import random
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.calibration import calibration_curve

from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.registry import ASSETS
from steering.tokens import encode

# (table, template, question column, answer column); the first rows of each table are the few-shot examples.
QUESTION_SETS = {
    "capitals": ("capitals", "What is the capital of {}?", "country", "capital"),
    "cities": ("cities", "Which country is the city of {} in?", "city", "country"),
}
N_SHOTS = 3


def _rows(table: str) -> list[dict[str, str]]:
    with (ASSETS / "facts" / f"{table}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def question_set(n_questions: int, seed: int = 0) -> pd.DataFrame:
    """Up to n_questions rows (set, question, answer, prompt), split evenly over QUESTION_SETS, drawn with a seed
    from each table after its first N_SHOTS rows (which make that set's few-shot prefix)."""
    if n_questions < 2:
        raise InvalidInputError(f"Ask for at least 2 questions; got {n_questions}.")
    rng = random.Random(seed)
    out = []
    for name, (table, template, q_col, a_col) in QUESTION_SETS.items():
        rows = [r for r in _rows(table) if r[q_col] != r[a_col]]
        shots, pool = rows[:N_SHOTS], rows[N_SHOTS:]
        prefix = "".join(f"Question: {template.format(r[q_col])}\nAnswer: {r[a_col]}\n\n" for r in shots)
        for r in rng.sample(pool, min(len(pool), n_questions // len(QUESTION_SETS))):
            question = template.format(r[q_col])
            out.append({"set": name, "question": question, "answer": r[a_col],
                        "prompt": f"{prefix}Question: {question}\nAnswer:"})
    return pd.DataFrame(out)


def answer_token_ids(tokenizer, answers: list[str]) -> list[int]:
    """The first token of " <answer>" (the answer as it follows "Answer:")."""
    return [tokenizer(" " + a, add_special_tokens=False)["input_ids"][0] for a in answers]


@torch.no_grad()
def score_questions(model, tokenizer, questions: pd.DataFrame, batch_size: int,
                    report: Callable[[int, int], None]) -> pd.DataFrame:
    """questions plus confidence, p_answer, entropy, correct, for one model."""
    view = ModelView.of(model)
    answer_ids = torch.tensor(answer_token_ids(tokenizer, list(questions["answer"])))
    parts = []
    prompts = list(questions["prompt"])
    for start in range(0, len(prompts), batch_size):
        batch = encode(tokenizer, prompts[start:start + batch_size], view.device)
        hidden = view.decoder_stack(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).last_hidden_state[:, -1]
        logp = torch.log_softmax(view.logits(hidden).float(), -1).cpu()
        ids = answer_ids[start:start + batch_size]
        parts.append(pd.DataFrame({
            "confidence": logp.max(-1).values.exp().numpy(),
            "p_answer": logp.gather(-1, ids[:, None])[:, 0].exp().numpy(),
            "entropy": (-(logp.exp() * logp).sum(-1)).numpy(),
            "correct": (logp.argmax(-1) == ids).numpy(),
        }))
        report(min(start + batch_size, len(prompts)), len(prompts))
    return pd.concat([questions.reset_index(drop=True), pd.concat(parts, ignore_index=True)], axis=1)


def _bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence, as sklearn.calibration.calibration_curve(strategy='uniform') assigns them."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidence)


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray, n_bins: int = 10) -> float:
    """sum over bins of (bin size / n) * |accuracy - mean confidence| (equal-width bins on [0, 1])."""
    correct, confidence = np.asarray(correct, float), np.asarray(confidence, float)
    if len(correct) == 0:
        return float("nan")
    bins = _bin_ids(confidence, n_bins)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def reliability(correct: np.ndarray, confidence: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Non-empty bins: mean confidence, accuracy (from sklearn's calibration_curve) and the count."""
    correct, confidence = np.asarray(correct, int), np.asarray(confidence, float)
    accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(_bin_ids(confidence, n_bins), minlength=n_bins)
    return pd.DataFrame({"mean_confidence": mean_conf, "accuracy": accuracy, "count": counts[counts > 0]})


def summarize(scored: pd.DataFrame, n_bins: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model: accuracy, mean entropy, mean max probability, mean p(answer), ECE; and the reliability bins."""
    summary, bins = [], []
    for model, rows in scored.groupby("model", sort=False):
        correct, conf = rows["correct"].to_numpy(), rows["confidence"].to_numpy()
        summary.append({"model": model, "n": len(rows), "accuracy": float(correct.mean()),
                        "mean_entropy": float(rows["entropy"].mean()), "mean_max_prob": float(conf.mean()),
                        "mean_p_answer": float(rows["p_answer"].mean()),
                        "ece": expected_calibration_error(correct, conf, n_bins)})
        bins.append(reliability(correct, conf, n_bins).assign(model=model))
    return pd.DataFrame(summary), pd.concat(bins, ignore_index=True)
