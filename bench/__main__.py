"""`python -m bench`: every benchmark, one after the other: the foundation, the playground, the calibration, then one per study of
the registry (bench/<study>.py for each study in analyses.STUDIES; a study without one is named, not skipped
silently). Each prints its own ratios, measured side by side in one run."""
import subprocess
import sys
from pathlib import Path

from analyses import STUDY_NAMES

BENCH = Path(__file__).resolve().parent


def main() -> int:
    names = ["foundation", "playground", "composition", "calibration", *STUDY_NAMES]
    missing = [n for n in names if not (BENCH / f"{n}.py").exists()]
    if missing:
        print(f"no benchmark for: {', '.join(missing)}", file=sys.stderr)
    failed = []
    for name in (n for n in names if n not in missing):
        print(f"== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=BENCH.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
