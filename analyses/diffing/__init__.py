"""The model-diffing study: where, on any text, the post-trained model parts from the base (per-token KL, logit
lens), and what post-training added (the activation-difference lens on plain text). See compute.py for the method;
`python -m analyses diffing --pair demo --text "..." --out DIR`."""
from analyses.study import InLab, study_of

from .compare import compared_with
from .compute import Result, run
from .config import Config
from .data import DiffingData, default_data
from .divergence import position_view
from .summary import headline

STUDY = study_of(
    __name__,
    title="Diffing",
    summary="where, on any text, the post-trained model parts from the base, and what post-training added",
    about="On a text (or a chat turn), both models predict every next token: the KL divergence both ways, the total "
          "variation and the actual next token's rank under each show where they part, and at one position the "
          "logit lens of both models and the tokens whose probability rose and fell most show how. The mean "
          "difference of the two models' residual streams over the first few tokens of ordinary plain text, read "
          "through the unembedding or a Patchscope, names what post-training wrote into the model (Minder et al. "
          "2025); it is a direction the playground can steer with, compared with the studies' refusal and truth "
          "directions.",
    version="diffing@2",  # 2: KL and TV summed pairwise (not one einsum), the cosines not part of the run (compare.py)
    page="app_pages/6_Diffing.py",
    icon=":material/compare_arrows:",
    lab=InLab(
        series=(("mean_kl_post_base_harmless", "pair"), ("mean_kl_post_base_harmful", "pair"),
                ("difference_peak_relative_norm", "pair")),
        caption="How far has the stage moved from the base? The mean KL(stage ‖ base) per token on the built-in "
                "chat turns, and the peak norm of the mean activation difference on plain text relative to the "
                "residual norm. These grow with training; a jump shows which phase moves the model most.",
        seconds=8.0),
)

__all__ = ["STUDY", "Config", "Result", "run", "headline", "default_data", "DiffingData", "position_view",
           "compared_with"]
