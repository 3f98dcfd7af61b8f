"""The knowledge study: where facts are stored, base vs post-trained, by causal tracing (Du et al. 2025, §4).

    python -m analyses knowledge --pair demo --out out/knowledge [--corruption paired]

config.py the settings; data.py the facts and pairs; trace.py one item's screening and patching grids; screen.py
which items are traced; compute.py the method (`run`, and `trace_fact` for one fact of the user's); summary.py the
averages, comparison, recovery and headline; charts.py the heatmaps; partial.py
what the page draws while a run works."""
from __future__ import annotations

from analyses.study import CliExtras, Study

from .charts import all_charts
from .compute import Result, run, summary_text, trace_fact, trace_items
from .config import COMPONENTS, CORRUPTIONS, Config, check
from .data import ROLES, data_hash, dataset_names, default_data
from .partial import partial_chart
from .screen import SCREEN_CHUNK
from .summary import headline


def _print_summary(args, pair, result: Result, out) -> None:
    print(summary_text(result))


STUDY = Study(
    name="knowledge",
    title="Knowledge storage",
    about=("Each fact a model gets right is run clean and corrupted (noise on the subject's embeddings, or a false "
           "twin statement), and every (token, layer) cell of the corrupted run gets the clean run's hidden state "
           "back, one at a time, to measure how much of the clean answer returns. Averaged over facts by token "
           "role, these maps show where the model stores and moves the fact (ROME's causal tracing of the "
           "residual stream, MLP and attention). Base and post-trained maps are compared, and one model's clean "
           "states are patched into the other's corrupted run to see whether the storage is shared."),
    version="knowledge@3",
    Config=Config,
    Result=Result,
    run=run,
    charts=all_charts,
    headline=headline,
    default_data=default_data,
    data_hash=data_hash,
    page="app_pages/4_Knowledge.py",
    icon="🧠",
    summary="causal tracing: where facts are stored, base vs post-trained, and patching across the pair",
    cli=CliExtras(write=_print_summary),
    partial_chart=partial_chart,
)

__all__ = ["STUDY", "Config", "Result", "run", "trace_fact", "trace_items", "check", "headline", "all_charts",
           "default_data", "data_hash", "partial_chart",
           "dataset_names", "CORRUPTIONS", "COMPONENTS", "ROLES", "SCREEN_CHUNK"]
