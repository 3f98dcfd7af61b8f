"""How long a study page takes to show its charts on the demo pair, in a real browser, without a click.

    python -m bench.pages [--port 8765]

Serves `streamlit run app.py` from a fresh start, opens the landing page in Debian's chromium and waits until the
demo pair is loaded (that cost is printed apart), then opens each study page of analyses.STUDIES in turn and
times from navigation to its first drawn chart (the shipped results, read from assets/demo/results/). Prints one
line per page: `PAGE <study> seconds=<s> charts=<n>`."""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from analyses import STUDIES

ROOT = Path(__file__).resolve().parent.parent
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--browser.gatherUsageStats", "false"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(60):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator('[data-testid="stSidebar"] strong', has_text="demo").wait_for(timeout=600_000)
            print(f"PAIR demo loaded_seconds={time.perf_counter() - start:.1f}", flush=True)
            for study in STUDIES:
                url = f"http://127.0.0.1:{port}/{Path(study.page).stem.split('_', 1)[1]}"
                start = time.perf_counter()
                page.goto(url)
                page.locator(CHART).first.wait_for(timeout=600_000)
                seconds = time.perf_counter() - start
                page.wait_for_timeout(2000)
                print(f"PAGE {study.name} seconds={seconds:.1f} charts={page.locator(CHART).count()}", flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
