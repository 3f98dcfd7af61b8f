"""The post-training lab: every study of the registry at every stage of the road from base to SFT checkpoints to
DPO, each stage as a pair with the base, as one tidy table and a timeline of charts; the base's and the final
model's refusal directions steered along the road. `python -m analyses lab --pair demo --out DIR`.

The lab has the shape of a study (a `Study` record, so the result store, the CLI's outputs and the shipped results
work the same), but it is not one of the registry's studies: it runs them."""
import analyses
from analyses.study import study_of

from .charts import in_lab, partial
from .compute import Result, headline_rows, merged, models_needed, run, split_metric
from .config import Config, study_config
from .data import default_data
from .summary import headline


def lab_version() -> str:
    """The lab's own version and those of the studies it runs: a study's new version makes the lab's results
    stale too."""
    return "lab@1 (" + ", ".join(study.version for study in analyses.STUDIES) + ")"


LAB = study_of(
    __name__,
    title="Post-training lab",
    summary="every study along the road from base to SFT checkpoints to DPO",
    about="The demo pair's post-training keeps its checkpoints: the base, three SFT checkpoints, the SFT model, three "
          "DPO checkpoints and the DPO model. The lab runs every study of the registry at every stage, each stage "
          "paired with the base, and plots each study's headline numbers against training step, with the loss "
          "curves on top and a rule where SFT ends and DPO begins. It also adds the base's and the final model's "
          "refusal directions to every stage, to show when the direction starts to steer.",
    version=lab_version(),
    page="app_pages/7_Lab.py",
    base_only=True,
    partial_chart=partial,  # the timeline so far: drawn by the lab's charts module (its CLI extras: cli.py)
    icon=":material/timeline:",
)

STUDY = LAB  # the name every record `analyses.find_record` finds has

__all__ = ["LAB", "STUDY", "Config", "Result", "run", "headline", "default_data", "in_lab", "study_config",
           "models_needed", "split_metric", "merged", "headline_rows"]
