"""`python -m analyses <study> --pair demo --out DIR`: see analyses/cli.py."""
import sys

from analyses.cli import main

sys.exit(main())
