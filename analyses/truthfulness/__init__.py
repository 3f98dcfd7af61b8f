"""The truthfulness study (Du et al. 2025 after Marks & Tegmark's Geometry of Truth): truth directions and probes
per layer in both models, their cosine, and steering P(TRUE) - P(FALSE) with one model's direction in the other.

    from analyses.truthfulness import STUDY
    result = STUDY.run(pair, STUDY.Config())          # uncached; analyses.store.run_cached stores it
    python -m analyses.truthfulness --pair demo --out out/truthfulness [--statements FILE.csv] [--generalisation]
    python -m analyses.truthfulness --pair demo --out out/single --method single_set   # the earlier, non-paper study
"""
from analyses.study import InLab, study_of

from .compute import Result, balanced, probed_layers, read_activations, run, score_curve, steering_vectors
from .config import Config
from .data import default_data, uploaded_statements
from .general import GeneralConfig, generalisation
from .summary import headline

STUDY = study_of(
    __name__,
    title="Truthfulness",
    about="True and false statements are read at their last token in the residual stream entering every layer of "
          "both models. By default (the paper's method, Du et al.'s code) the truth direction of each layer is the "
          "difference of the true and false means of other statement sets (translations, animals, elements), each "
          "set centred on its own mean before pooling, and the chosen set (cities) is held out: probes fit on the "
          "pooled sets are tested on it. The cosine of the base and post-trained directions per layer says whether "
          "post-training kept the direction, and each direction's share in its largest dimensions says whether one "
          "dimension drives it. Each model's direction at the probe layer (0.375 of the depth) is then added whole "
          "at every layer from 0.25 of the depth to it, in both models, pushing false statements towards TRUE and "
          "true ones towards FALSE in a few-shot judging prompt shuffled per statement; the paper's normalised "
          "effect on P(TRUE) - P(FALSE) shows whether the direction transfers. --method single_set gives the "
          "project's earlier study (the direction from the set's own train split).",
    version="truthfulness@3",
    page="app_pages/2_Truthfulness.py",
    icon="✅",
    summary="probes and a truth direction per layer, their cosine across the pair, steering P(TRUE) − P(FALSE), "
            "transfer",
    lab=InLab(
        settings={},  # the study's default, the paper's method (coefficient 1, the normalised effect)
        series=(("best_probe_accuracy_logistic", "base"), ("best_probe_accuracy_logistic", "post"),
                ("direction_cosine_mean", "pair"), ("normalised_effect", "base->post"),
                ("normalised_effect", "post->post")),
        caption="Does the truth direction stay put? By the paper's method (directions from the pooled, per-set "
                "centred translations, animals and elements sets; cities held out): the probe accuracy on cities "
                "of each stage (post) against the base's, the mean cosine of the stage's truth direction with the "
                "base's over layers, and the paper's normalised effect of the base's direction and of the stage's "
                "own on the stage (forward transfer next to its own). The paper finds the direction shared at the "
                "two end points; a flat cosine near its end value says it is shared all along.",
        seconds=250.0),  # at the paper's settings: 195-324 s a stage in the merged run of the road
)

__all__ = ["STUDY", "Config", "Result", "run", "headline", "default_data", "score_curve", "steering_vectors",
           "balanced", "probed_layers", "read_activations", "uploaded_statements", "GeneralConfig", "generalisation"]
