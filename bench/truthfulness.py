"""Benchmark: all layers' truth directions and probes for one statement set on the demo pair, timed in one run.

    python -m bench.truthfulness [--dataset cities] [--n-train 200] [--n-test 100]

One activation pass per model reads every layer at once (collect_residuals); directions (mass-mean), projection
probes and logistic probes are then fit from those tensors, with probe transfer between the models."""
from __future__ import annotations

import argparse
import time

import torch

from analyses.common import PrintProgress, Steps
from analyses.statements import statement_set, statement_set_names
from analyses.truth_score import statement_offsets, truth_prompts
from analyses.truthfulness import Config, balanced, read_activations
from analyses.truthfulness.compute import judged_sets, probed_layers, used_statements
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
    1. activations: per model, the train and test statements alone, layers 0..(deepest probed - 1) (run_until
       stops there: nothing after the deepest read runs; no recording hook);
    2. calibration: per model, the calibration prompts through the whole decoder stack, the last position
       unembedded;
    3. steering: per model, the steered prompts up to their last k tokens (k from the statement's last token on)
       with a KV cache, their k-token suffix unsteered, and the suffix once more for all sources x alphas at once,
       from the first steered layer on (resume_at's one replacement; no addition hook), the last position
       unembedded each time. Probe fitting (scikit-learn) is not a forward pass and is not in the floor."""
    layers = probed_layers(config, pair.n_layers)
    train, test = used_statements(data, config)
    prefix, scored, calib = judged_sets(data, config)
    statements = list(train["statement"]) + list(test["statement"])
    k = -min(statement_offsets(pair.tokenizer))
    first = min(pair.n_layers // 3 if config.layer_start < 0 else config.layer_start, layers[-1])
    variants = 2 * len(config.alphas)
    start = time.perf_counter()
    for model in pair.models().values():
        view = ModelView.of(model)
        for batch in _batches(pair.tokenizer, statements, config.batch_size, view.device):
            run_until(model, f"resid_pre.{max(layers)}", **batch)
        for batch in _batches(pair.tokenizer, truth_prompts(list(calib["statement"]), prefix), config.batch_size,
                              view.device):
            view.logits(view.decoder_stack(**batch, use_cache=False).last_hidden_state[:, -1])
        for batch in _batches(pair.tokenizer, truth_prompts(list(scored["statement"]), prefix), config.batch_size,
                              view.device):
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
    parser.add_argument("--n-train", type=int, default=Config.n_train)
    parser.add_argument("--n-test", type=int, default=Config.n_test)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    timings: dict[str, float] = {}
    pair = timed("load demo pair", lambda: load_pair("demo"), timings)
    frame = statement_set(args.dataset)
    train = balanced(frame[frame["split"] == "train"], args.n_train, 0)
    test = balanced(frame[frame["split"] == "test"], args.n_test, 0)
    statements, n = list(train["statement"]) + list(test["statement"]), len(train)
    layers = list(range(pair.n_layers))
    steps = Steps(PrintProgress(), {f"acts {r}": 1 for r in pair.models()})
    acts = timed(f"activations, {len(statements)} statements x {len(layers)} layers x 2 models",
                 lambda: read_activations(pair, statements, layers, 32, steps), timings)
    y_train, y_test = (torch.as_tensor(f["label"].to_numpy().copy()) for f in (train, test))
    diffs = timed("mass-mean directions, all layers, both models",
                  lambda: {r: tp.mass_mean(a[:n], y_train) for r, a in acts.items()}, timings)
    timed("cosine table", lambda: tp.direction_table(diffs, layers), timings)
    projection = timed("projection probes (fit + test), both models",
                       lambda: {r: tp.accuracy(tp.ProjectionProbe.fit(a[:n], y_train).predict(a[n:]), y_test)
                                for r, a in acts.items()}, timings)
    table = timed("full probe table (projection + logistic, own and transferred)",
                  lambda: tp.probe_table({r: (a[:n], y_train) for r, a in acts.items()},
                                         {r: (a[n:], y_test) for r, a in acts.items()}, layers), timings)
    own = table[table["source"] == table["model"]]
    for (role, method), g in own.groupby(["model", "method"]):
        best = g.loc[g["accuracy"].idxmax()]
        print(f"best {role} {method}: layer {int(best['layer'])}, {best['accuracy']:.3f}")
    print(f"projection accuracy per layer: { {r: [round(float(x), 3) for x in v] for r, v in projection.items()} }")
    compute = sum(v for k, v in timings.items() if k != "load demo pair")
    print(f"ALL LAYERS' DIRECTIONS AND PROBES ({args.dataset}, {len(statements)} statements, demo pair): "
          f"{compute:.1f} s, of which activations {timings[next(k for k in timings if k.startswith('activations'))]:.1f} s")


if __name__ == "__main__":
    main()
