"""Benchmark: the full confidence study on the demo pair, timed stage by stage in one run (no result cache), its
forward-pass floor, and one last-layer neuron ablation both ways.

    python -m bench.confidence [--max-tokens 512] [--n-questions 200]

The two ways of one ablation, on the same text: the fast path (the LastLayerAblation basis: the clean run's
vocab vectors combined per token, no unembedding per neuron) and the reference (today's path: the final norm's
input rebuilt from the clean run, then the final norm and a full unembedding per neuron)."""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import torch

from analyses.confidence import Config, default_data, run, summary_text
from analyses.confidence import ablation as abl
from analyses.confidence import calibration as cal
from analyses.common import PrintProgress
from steering import load_pair
from steering.interventions import record
from steering.model_view import ModelView
from steering.neurons import final_norm_input, mlp_output_from_neurons
from steering.tokens import encode


@torch.no_grad()
def floor(pair, config: Config, data: Sequence[str] | None = None) -> float:
    """Seconds of the plain passes the study's result needs, run here (no hooks while timed):
    for each model of the pair,
      - the clean run: the decoder stack over the held-out text in the study's batches (config.batch_size texts,
        up to config.max_tokens tokens), and the logits (unembedding, softcap) only at the positions whose next
        token is read (both real tokens, not the last position);
      - per ablated neuron (config.n_candidates + config.n_random), at the last layer only what the ablation can
        change: the MLP's down projection from the (ablated) activations, the norm after the MLP if any, the final
        norm and the logits at the same read positions, in the same batches (the activations and the residual
        before the MLP are the clean run's, prepared untimed);
      - the questions: the decoder stack over the config.n_questions prompts in batches of 4 * batch_size, and the
        logits at the last position only.
    Not counted: the weights stage (no forward pass), statistics (log-softmax, entropy), tokenization."""
    texts = default_data(pair, config) if data is None else list(data)
    batches = abl.text_batches(pair.tokenizer, texts, config.max_tokens, config.batch_size)
    prompts = list(cal.question_set(config.n_questions, config.seed)["prompt"])
    q_size = 4 * config.batch_size
    q_batches = [encode(pair.tokenizer, prompts[i:i + q_size]) for i in range(0, len(prompts), q_size)]
    n_ablate = config.n_candidates + config.n_random
    return sum(_model_floor(model, batches, q_batches, n_ablate) for model in pair.models().values())


def _model_floor(model, batches, q_batches, n_ablate: int) -> float:
    view = ModelView.of(model)
    layer = view.n_layers - 1
    prepared = [_clean_parts(model, view, layer, batch) for batch in batches]  # untimed: hooks
    start = time.perf_counter()
    for batch in batches:
        hidden = view.decoder_stack(input_ids=batch["input_ids"].to(view.device),
                                    attention_mask=batch["attention_mask"].to(view.device)).last_hidden_state
        valid, _ = abl.predicted(batch, hidden.device)
        view.logits(hidden[valid])
    for neuron in range(n_ablate):
        for valid, acts, rest in prepared:
            acts = acts.clone()
            acts[..., neuron] = 0.0
            x = rest + mlp_output_from_neurons(view, layer, acts)
            view.logits(view.final_norm(x)[valid])
    for batch in q_batches:
        hidden = view.decoder_stack(input_ids=batch["input_ids"].to(view.device),
                                    attention_mask=batch["attention_mask"].to(view.device)).last_hidden_state
        view.logits(hidden[:, -1])
    return time.perf_counter() - start


def _clean_parts(model, view: ModelView, layer: int, batch):
    """(read positions, the last layer's activations, the final norm's input less what that MLP adds)."""
    with record(model, [f"neurons.{layer}"], positions="all") as rec, final_norm_input(model) as store:
        view.decoder_stack(input_ids=batch["input_ids"].to(view.device),
                           attention_mask=batch["attention_mask"].to(view.device))
    acts = rec.get(f"neurons.{layer}")
    valid, _ = abl.predicted(batch, acts.device)
    return valid, acts, store[-1] - mlp_output_from_neurons(view, layer, acts).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=Config.max_tokens)
    parser.add_argument("--n-questions", type=int, default=Config.n_questions)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch threads: {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    pair = load_pair("demo")
    print(f"demo pair loaded in {time.perf_counter() - start:.1f} s")
    config = Config(max_tokens=args.max_tokens, n_questions=args.n_questions)
    data = default_data(pair, config)
    floor_seconds = floor(pair, config, data)
    start = time.perf_counter()
    result = run(pair, config, data=data, progress=PrintProgress())
    total = time.perf_counter() - start
    print(summary_text(result, total))
    print(f"FULL ANALYSIS (both models, defaults but the options above): {total:.1f} s; floor {floor_seconds:.1f} s; "
          f"ratio {total / floor_seconds:.2f}; stages {result.timings}")
    _one_ablation_both_ways(pair, config, data, result.candidates["base"][0])
    print(f"load average {os.getloadavg()[0]:.2f}")


def _one_ablation_both_ways(pair, config: Config, data, neuron: int) -> None:
    batches = abl.text_batches(pair.tokenizer, data, config.max_tokens, config.batch_size)
    layer = pair.n_layers - 1
    clean = abl.clean_run(pair.base, batches, layer)
    timed, rows = {}, {}
    for fast in (True, False):
        start = time.perf_counter()
        rows[fast] = abl.ablation_table(pair.base, batches, layer, {"candidate": [neuron]}, clean,
                                        lambda done, total: None, fast=fast).iloc[0]
        timed[fast] = time.perf_counter() - start
    gap = max(abs(rows[True][k] - rows[False][k]) for k in rows[True].index if k.startswith("d_"))
    print(f"one last-layer ablation over {len(clean.stats['loss'])} tokens (basis included): fast {timed[True]:.1f} s, "
          f"reference {timed[False]:.1f} s ({timed[False] / timed[True]:.2f}x); largest difference {gap:.2e}")


if __name__ == "__main__":
    main()
