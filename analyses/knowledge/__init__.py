"""The knowledge study: where facts are stored, base vs post-trained, by causal tracing (Du et al. 2025, §4).

    python -m analyses knowledge --pair demo --out out/knowledge [--corruption paired]

config.py the settings; data.py the facts and pairs; trace.py one item's screening and patching grids; screen.py
which items are traced; compute.py the method (`run`, and `trace_fact` for one fact of the user's); summary.py the
averages, comparison, recovery and headline; charts.py the heatmaps; partial.py
what the page draws while a run works."""
from __future__ import annotations

from analyses.study import InLab, study_of

from .compute import Result, run, trace_fact, trace_items
from .config import COMPONENTS, CORRUPTIONS, Config
from .data import dataset_names, default_data
from .screen import SCREEN_CHUNK
from .summary import headline

STUDY = study_of(
    __name__,
    title="Knowledge storage",
    about=("Each fact a model gets right is run clean and corrupted (noise on the subject's embeddings, or a false "
           "twin statement), and every (token, layer) cell of the corrupted run gets the clean run's hidden state "
           "back, one at a time, to measure how much of the clean answer returns. Averaged over facts by token "
           "role, these maps show where the model stores and moves the fact (ROME's causal tracing of the "
           "residual stream, MLP and attention). Base and post-trained maps are compared, and one model's clean "
           "states are patched into the other's corrupted run to see whether the storage is shared."),
    version="knowledge@3",
    page="app_pages/4_Knowledge.py",
    icon="🧠",
    summary="causal tracing: where facts are stored, base vs post-trained, and patching across the pair",
    lab=InLab(
        settings={"components": "resid", "cross_model": False},  # the residual-stream map the timeline correlates
        series=(("pearson_cells", "resid"), ("pearson_roles", "resid")),
        caption="Do facts stay where they were stored? The correlation of each stage's causal-tracing map with the "
                "base's, cell by cell and averaged by token role (residual stream). Values near 1 all along mean "
                "post-training leaves the storage of facts in place, as the paper finds at the two end points.",
        seconds=110.0),
)

__all__ = ["STUDY", "Config", "Result", "run", "trace_fact", "trace_items", "headline", "default_data",
           "dataset_names", "CORRUPTIONS", "COMPONENTS", "SCREEN_CHUNK"]
