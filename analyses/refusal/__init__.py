"""The refusal study as one `Study` record (see analyses/study.py): `python -m analyses refusal --pair demo --out DIR`,
the page app_pages/3_Refusal.py, and `analyses.store.run_cached(STUDY, pair, Config())` share it."""
from __future__ import annotations

from ..study import InLab, study_of
from .compute import Result, candidate_norms, run, steering_of
from .config import ABLATION_HELP, ABLATIONS, Config, phrases_setting
from .data import builtin_data, default_data, split_lists
from .evaluate import SelectedDirection, live_generation
from .partial import partial_chart
from .road import direction_cosines, final_direction, transfer_along_road
from .summary import headline

__all__ = ["ABLATIONS", "ABLATION_HELP", "STUDY", "Config", "Result", "SelectedDirection", "builtin_data",
           "default_data", "headline", "live_generation", "partial_chart", "phrases_setting", "run", "candidate_norms",
           "split_lists", "steering_of", "direction_cosines", "final_direction", "transfer_along_road"]

STUDY = study_of(
    __name__,
    title="Refusal",
    about=("Each model's candidate refusal directions are the difference in mean residual activations between "
           "harmful and harmless instructions at every layer and post-instruction token (Arditi et al. 2024). "
           "The candidate whose ablation most lowers refusal on validation prompts, without moving harmless "
           "prompts' next-token distribution and while its addition induces refusal, is selected. On held-out "
           "prompts each model is then steered with its own and with the other model's direction, which measures "
           "forward (base to post-trained) and backward (post-trained to base) transfer."),
    version="refusal@5",  # 5: every candidate as a Direction (per model and position); 4: Parquet and safetensors in the store
    page="app_pages/3_Refusal.py",
    icon="🛑",
    summary="the refusal direction chosen as Arditi et al. do, ablation and addition, forward and backward transfer",
    lab=InLab(
        settings={"layer_step": 2, "n_test": 24},  # every other layer, 24 test prompts per side (also its defaults)
        series=(("refusal_rate_harmful_unsteered", "post"), ("refusal_rate_harmless_unsteered", "post"),
                ("direction_cosine_with_final", "post"), ("direction_cosine_with_base", "post")),
        caption="When does refusal appear, and where? The stage's refusal rates on held-out harmful and harmless "
                "prompts, and the cosine of its refusal direction with the final model's and with the base's (all "
                "at the final model's selected layer and position). A rising cosine with the final model shows "
                "when the direction takes its final shape; a jump after the rule shows DPO moving it.",
        seconds=240.0),
)
