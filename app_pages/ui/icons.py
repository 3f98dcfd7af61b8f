"""The app's icons as Streamlit Material icons: they render from Streamlit's own font, where an emoji shows as an
empty box on a machine without an emoji font."""
from __future__ import annotations

HOME = ":material/science:"
PLAYGROUND = ":material/tune:"
STUDY_ICONS = {"truthfulness": ":material/fact_check:", "refusal": ":material/block:",
               "knowledge": ":material/psychology:", "confidence": ":material/thermostat:"}


def study_icon(study) -> str:
    """The study's Material icon (its own icon for a study this table does not know)."""
    return STUDY_ICONS.get(study.name, study.icon)
