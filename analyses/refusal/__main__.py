"""`python -m analyses.refusal --pair demo --out DIR`: the same command as `python -m analyses refusal ...`."""
import sys

from analyses.cli import study_main

sys.exit(study_main("refusal"))
