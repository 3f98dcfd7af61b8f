"""python -m analyses.lab: the same command as `python -m analyses lab`."""
import shlex
import sys

from analyses.cli import run_from_args, study_parser
from analyses.lab import LAB

if __name__ == "__main__":
    argv = sys.argv[1:]
    args = study_parser(LAB, "python -m analyses.lab").parse_args(argv)
    sys.exit(run_from_args(LAB, args, shlex.join(["python", "-m", "analyses", "lab", *argv])))
