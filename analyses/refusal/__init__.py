"""The refusal study as one `Study` record (see analyses/study.py): `python -m analyses refusal --pair demo --out DIR`,
the page app_pages/3_Refusal.py, and `analyses.store.run_cached(STUDY, pair, Config())` share it."""
from __future__ import annotations

from ..study import Study
from .charts import charts
from .compute import Result, candidate_norms, data_hash, default_data, run, selected_direction, steering_of, work
from .config import ABLATION_HELP, ABLATIONS, Config, phrases_setting
from .data import RefusalData, builtin_data, split_lists
from .evaluate import SelectedDirection, live_generation
from .extras import CLI
from .headline import headline
from .partial import partial_chart

__all__ = ["ABLATIONS", "ABLATION_HELP", "STUDY", "Config", "RefusalData", "Result", "SelectedDirection",
           "builtin_data", "charts", "data_hash", "default_data", "headline", "live_generation", "partial_chart",
           "phrases_setting", "run", "selected_direction", "candidate_norms", "split_lists", "steering_of"]

STUDY = Study(
    name="refusal",
    title="Refusal",
    about=("Each model's candidate refusal directions are the difference in mean residual activations between "
           "harmful and harmless instructions at every layer and post-instruction token (Arditi et al. 2024). "
           "The candidate whose ablation most lowers refusal on validation prompts, without moving harmless "
           "prompts' next-token distribution and while its addition induces refusal, is selected. On held-out "
           "prompts each model is then steered with its own and with the other model's direction, which measures "
           "forward (base to post-trained) and backward (post-trained to base) transfer."),
    version="refusal@5",  # 5: every candidate as a Direction (per model and position); 4: Parquet and safetensors in the store
    Config=Config,
    Result=Result,
    run=run,
    charts=charts,
    headline=headline,
    partial_chart=partial_chart,
    work=work,
    default_data=default_data,
    data_hash=data_hash,
    page="app_pages/3_Refusal.py",
    icon="🛑",
    summary="the refusal direction chosen as Arditi et al. do, ablation and addition, forward and backward transfer",
    cli=CLI,
)
