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
from analyses.truthfulness import Config, balanced, read_activations
from analyses.truthfulness import probes as tp
from steering import load_pair


def timed(label: str, fn, timings: dict):
    start = time.perf_counter()
    out = fn()
    timings[label] = time.perf_counter() - start
    print(f"{label}: {timings[label]:.2f} s", flush=True)
    return out


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
