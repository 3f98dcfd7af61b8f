"""`python -m analyses.truthfulness --pair demo --out DIR`: the same as `python -m analyses truthfulness`."""
import sys

from analyses.cli import study_main

sys.exit(study_main("truthfulness"))
