"""Benchmark: all layers' truth directions and probes for one statement set on the demo pair, timed in one run.

    python -m bench.truthfulness [--dataset cities] [--method paper|single_set]

One activation pass per model reads every layer at once (collect_residuals) for the statements the study's method
reads (the paper's: the pooled train sets and the held-out test sample); directions (mass-mean), projection probes
and logistic probes are then fit from those tensors, with probe transfer between the models. `floor` is the study's
forward-pass floor for bench.studies."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from analyses.common import PrintProgress, Steps
from analyses.statements import statement_set, statement_set_names
from analyses.truth_score import prefix_of, statement_offsets, truth_prompts
from analyses.truthfulness import Config, read_activations
from analyses.truthfulness.config import single_set
from analyses.truthfulness.compute import choose_layers, judged_sets, probed_layers, prompt_orders, \
    split_statements
from analyses.truthfulness import probes as tp
from steering import load_pair
from steering.interventions import run_until
from steering.model_view import ModelView
from steering.resume import resume_at
from steering.suffix import run_prefix, run_suffix
from steering.tokens import encode


def timed(label: str, fn, timings: dict):
    start = time.perf_counter()
    out = fn()
    timings[label] = time.perf_counter() - start
    print(f"{label}: {timings[label]:.2f} s", flush=True)
    return out


@torch.no_grad()
def floor(pair, config: Config, data) -> float:
    """Seconds of the plain passes the study's result needs, for this config, with the study's batch shapes:
    1. activations: per model, the statements the direction and probes are fit and tested on (the paper method:
       every statement of the train_sets and the held-out test sample), layers 0..(deepest probed - 1) (run_until
       stops there: nothing after the deepest read runs; no recording hook);
    2. calibration: per model, the calibration prompts (each with its own few-shot order) through the whole
       decoder stack, the last position unembedded;
    3. steering: per model, the steered prompts (each with its own few-shot order) up to their last k tokens with
       a KV cache, their k-token suffix unsteered, and the suffix once more for all sources x alphas at once, from
       the first steered layer on (resume_at's one replacement; no addition hook), the last position unembedded
       each time. Probe fitting (scikit-learn) is not a forward pass and is not in the floor."""
    layers = probed_layers(config, pair.n_layers)
    statements = split_statements(data, config).statements()
    prefix, scored, calib = judged_sets(data, config)
    shots = prefix.splitlines(keepends=True)
    calib_prompts = truth_prompts(list(calib["statement"]), [prefix_of(shots, o) for o in
                                                              prompt_orders(config, len(shots), len(calib), 1)])
    scored_prompts = truth_prompts(list(scored["statement"]), [prefix_of(shots, o) for o in
                                                                prompt_orders(config, len(shots), len(scored), 0)])
    k = -min(statement_offsets(pair.tokenizer))
    # the study's own choice of layers; the train accuracies only matter for probe_layer -2 (best), not the default
    _, steered = choose_layers(config, layers, np.zeros(len(layers)), pair.n_layers)
    first = steered[0]
    variants = 2 * len(config.alphas)
    start = time.perf_counter()
    for model in pair.models().values():
        view = ModelView.of(model)
        for batch in _batches(pair.tokenizer, statements, config.batch_size, view.device):
            run_until(model, f"resid_pre.{max(layers)}", **batch)
        for batch in _batches(pair.tokenizer, calib_prompts, config.batch_size, view.device):
            view.logits(view.decoder_stack(**batch, use_cache=False).last_hidden_state[:, -1])
        for batch in _batches(pair.tokenizer, scored_prompts, config.batch_size, view.device):
            cached = run_prefix(model, batch["input_ids"], batch["attention_mask"], k)
            view.logits(run_suffix(model, cached)[:, -1])
            n = batch["input_ids"].shape[0]
            stream = torch.zeros(n * variants, k, view.d_model, dtype=view.embedding.weight.dtype)
            with resume_at(model, first, stream):
                view.logits(run_suffix(model, cached, repeats=variants)[:, -1])
    return time.perf_counter() - start


def _batches(tokenizer, texts, batch_size, device):
    for start in range(0, len(texts), batch_size):
        batch = encode(tokenizer, texts[start:start + batch_size], device)
        yield {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cities", choices=statement_set_names())
    parser.add_argument("--method", default=Config.method, choices=["paper", "single_set"])
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    timings: dict[str, float] = {}
    pair = timed("load demo pair", lambda: load_pair("demo"), timings)
    config = Config(dataset=args.dataset) if args.method == "paper" else single_set(dataset=args.dataset)
    split = split_statements(statement_set(args.dataset), config)
    statements, layers = split.statements(), list(range(pair.n_layers))
    steps = Steps(PrintProgress(), {f"acts {r}": 1 for r in pair.models()})
    acts = timed(f"activations, {len(statements)} statements x {len(layers)} layers x 2 models",
                 lambda: read_activations(pair, statements, layers, config.batch_size, steps), timings)
    parts = {r: split.parts(a) for r, a in acts.items()}
    y_fit, y_test = split.fit_labels(), torch.as_tensor(split.test["label"].to_numpy().copy())
    diffs = timed("mass-mean directions, all layers, both models",
                  lambda: {r: tp.mass_mean(fit, y_fit) for r, (fit, _) in parts.items()}, timings)
    timed("cosine table", lambda: tp.direction_table(diffs, layers), timings)
    table = timed("full probe table (projection + logistic, own and transferred)",
                  lambda: tp.probe_table({r: (fit, y_fit) for r, (fit, _) in parts.items()},
                                         {r: (test, y_test) for r, (_, test) in parts.items()}, layers), timings)
    own = table[table["source"] == table["model"]]
    for (role, method), g in own.groupby(["model", "method"]):
        best = g.loc[g["accuracy"].idxmax()]
        print(f"best {role} {method}: layer {int(best['layer'])}, {best['accuracy']:.3f}")
    compute = sum(v for k, v in timings.items() if k != "load demo pair")
    print(f"ALL LAYERS' DIRECTIONS AND PROBES ({config.method}, {args.dataset}, {len(statements)} statements, demo "
          f"pair): {compute:.1f} s, of which activations "
          f"{timings[next(k for k in timings if k.startswith('activations'))]:.1f} s")


if __name__ == "__main__":
    main()
