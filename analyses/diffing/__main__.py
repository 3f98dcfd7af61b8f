import sys

from analyses.cli import study_main

sys.exit(study_main("diffing"))
