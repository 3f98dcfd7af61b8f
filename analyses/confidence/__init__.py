"""The confidence study: entropy neurons (weights, overlap, mean ablation) and calibration, base vs post-trained
(Du et al. 2025, §6). See compute.py for the method; `python -m analyses confidence --pair demo --out DIR`."""
from analyses.study import Study

from .charts import all_charts
from .compute import Result, check_config, geometries, random_neurons, run, score_model
from .config import CANDIDATE_COUNTS, NORM_FRACTIONS, Config
from .data import data_hash, default_data, heldout_texts
from .partial import partial_chart
from .summary import headline, summary_text

STUDY = Study(
    name="confidence",
    title="Confidence",
    summary="entropy neurons in the last MLP layer, their ablation, and calibration of both models",
    about="Each neuron of the last MLP layer is scored from its weights: entropy neurons have a large output weight "
          "that the unembedding hardly reads (low variance of their logit effect, most of it in the unembedding's "
          "null space), and the candidate sets of the base and post-trained models are compared by IoU. Each "
          "candidate, and random control neurons, is mean-ablated over held-out text to measure its effect on the "
          "next-token entropy and loss, in total and with the final norm's scale frozen (the difference is what "
          "acts through the norm). Both models also answer the same short-answer questions, so their confidence "
          "(entropy, maximum probability) and calibration (ECE, reliability diagram) can be compared.",
    version="confidence@2",
    Config=Config,
    Result=Result,
    run=run,
    charts=all_charts,
    headline=headline,
    default_data=default_data,
    data_hash=data_hash,
    page="app_pages/5_Confidence.py",
    partial_chart=partial_chart,
    icon="🌡️",
)

__all__ = ["STUDY", "Config", "Result", "run", "headline", "all_charts", "check_config", "geometries",
           "random_neurons", "score_model", "heldout_texts", "default_data", "data_hash", "summary_text",
           "NORM_FRACTIONS", "CANDIDATE_COUNTS", "partial_chart"]
