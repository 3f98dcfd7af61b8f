"""Command line of the truthfulness study: `python -m analyses.truthfulness --pair demo --dataset cities --out DIR`.

Writes every table (CSV, summary.json) and chart (HTML) of the study, and with --generalisation the table of probes
fit on the other statement sets and tested on each held-out one."""
from __future__ import annotations

import argparse
import sys
import time

from analyses import cli
from analyses.common import PrintProgress
from analyses.statements import statement_set_names
from analyses.truthfulness import Config, Result, run

def parser() -> argparse.ArgumentParser:
    p = cli.study_parser("python -m analyses.truthfulness", __doc__.split("\n\n")[0], Config,
                         choices={"dataset": statement_set_names()})
    p.add_argument("--generalisation", action="store_true", help="also train on several sets, test on held-out ones")
    p.add_argument("--general-n-per-set", type=int, default=60, help="statements per set for --generalisation")
    return p


def summary_text(result: Result, elapsed: float) -> str:
    lines = [f"dataset {result.dataset}; probe layer {result.probe_layer}; steered layers {result.steer_layers} at "
             f"offsets {result.offsets}"]
    lines += [f"best {role} {method}: layer {layer}, test accuracy {acc:.3f}"
              for role, methods in result.best.items() for method, (layer, acc) in methods.items()]
    lines += ["directions per layer (gap = norm of mean(true) - mean(false)):",
              result.directions.round(3).to_string(index=False)]
    cross = result.probes[(result.probes["source"] != result.probes["model"])
                          & (result.probes["layer"] == result.probe_layer)]
    if not cross.empty:
        lines += [f"probe transfer at layer {result.probe_layer}:", cross.round(3).to_string(index=False)]
    lines += [f"thresholds (midpoint of train true/false mean scores): {result.thresholds}",
              "intervention (mean_change > 0 = moved as pushed; flip = judged right before, wrong after):",
              result.transfer.drop(columns=["threshold"]).round(3).to_string(index=False),
              f"timings (s): {result.timings}; this call {elapsed:.1f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from analyses.truthfulness_charts import all_charts, generalisation
    from analyses.truthfulness_general import GeneralConfig
    from analyses.truthfulness_general import generalisation as general_table

    def body() -> None:
        config = cli.config_from_args(args, Config)
        pair = cli.pair_from_args(args)
        if pair.post is None:
            print("No post-trained model in this pair: the study runs on the base model alone (no cosine, "
                  "no transfer).")
        start = time.perf_counter()
        result = run(pair, config, PrintProgress(), cache=cli.result_cache(args, "truthfulness"))
        elapsed = time.perf_counter() - start
        charts = all_charts(result)
        if args.generalisation:
            gen_start = time.perf_counter()
            table = general_table(pair, GeneralConfig(n_per_set=args.general_n_per_set,
                                                      batch_size=config.batch_size), PrintProgress())
            args.out.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out / "generalisation.csv", index=False)
            charts["generalisation"] = generalisation(table)
            best = table.loc[table.groupby(["model", "held_out", "method"])["accuracy"].idxmax()]
            print("generalisation (best layer per held-out set):\n" + best.round(3).to_string(index=False))
            print(f"generalisation took {time.perf_counter() - gen_start:.1f} s")
        cli.write_outputs(result, charts, args.out)
        print(summary_text(result, elapsed))
        print(f"tables and charts in {args.out}")

    return cli.exit_code(body)


if __name__ == "__main__":
    sys.exit(main())
