"""python -m analyses.lab: the same command as `python -m analyses lab`."""
import sys

from analyses.cli import study_main

if __name__ == "__main__":
    sys.exit(study_main("lab"))
