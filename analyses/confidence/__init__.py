"""The confidence study: entropy neurons (weights, overlap, mean ablation) and calibration, base vs post-trained
(Du et al. 2025, §6). See compute.py for the method; `python -m analyses confidence --pair demo --out DIR`."""
from analyses.study import InLab, study_of

from .compute import Result, geometries, run, score_model
from .config import Config
from .data import default_data, heldout_texts
from .partial import partial_chart
from .summary import headline, summary_text

STUDY = study_of(
    __name__,
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
    page="app_pages/5_Confidence.py",
    icon="🌡️",
    lab=InLab(
        settings={"max_tokens": 256, "n_questions": 100},  # half the text and questions of a study run
        series=(("entropy_neuron_iou", "pair"), ("ece", "base"), ("ece", "post"), ("accuracy", "post")),
        caption="Does calibration change with SFT or with DPO? The overlap (IoU) of each stage's entropy neurons "
                "with the base's, and the expected calibration error and accuracy of the stage next to the base's. "
                "Watch which phase moves the ECE.",
        seconds=130.0),
)

__all__ = ["STUDY", "Config", "Result", "run", "headline", "geometries", "score_model", "heldout_texts", "default_data",
           "summary_text", "partial_chart"]
