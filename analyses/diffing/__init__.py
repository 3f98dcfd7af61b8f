"""The model-diffing study: where, on any text, the post-trained model parts from the base (per-token KL, logit
lens), and what post-training added (the activation-difference lens on plain text). See compute.py for the method;
`python -m analyses diffing --pair demo --text "..." --out DIR`."""
from analyses.study import Study

from .charts import all_charts
from .compute import Result, check_inputs, run
from .config import READINGS, Config
from .data import DiffingData, data_hash, default_data, example_turns, plain_texts
from .summary import headline

STUDY = Study(
    name="diffing",
    title="Diffing",
    summary="where, on any text, the post-trained model parts from the base, and what post-training added",
    about="On a text (or a chat turn), both models predict every next token: the KL divergence both ways, the total "
          "variation and the actual next token's rank under each show where they part, and at one position the "
          "logit lens of both models and the tokens whose probability rose and fell most show how. The mean "
          "difference of the two models' residual streams over the first few tokens of ordinary plain text, read "
          "through the unembedding or a Patchscope, names what post-training wrote into the model (Minder et al. "
          "2025); it is a direction the playground can steer with, compared with the studies' refusal and truth "
          "directions.",
    version="diffing@1",
    Config=Config,
    Result=Result,
    run=run,
    charts=all_charts,
    headline=headline,
    default_data=default_data,
    data_hash=data_hash,
    page="app_pages/6_Diffing.py",
    icon=":material/compare_arrows:",
)

__all__ = ["STUDY", "Config", "Result", "run", "headline", "all_charts", "check_inputs", "default_data",
           "data_hash", "DiffingData", "example_turns", "plain_texts", "READINGS"]
