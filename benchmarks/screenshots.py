"""README pictures from a real run: the MLflow runs table and the leaderboard.

Starts ``mlflow server`` on the given tracking database (127.0.0.1, a free port), opens the
experiment in headless Chromium (Debian's ``chromium``: ``apt-get install chromium``), expands the
pipeline groups and saves the screenshot; copies ``outputs/report/leaderboard.png``. Driving the
page needs the ``playwright`` package (``pip install playwright``, no browser download: it uses the
system Chromium); without it, a plain ``chromium --screenshot`` of the collapsed table is taken.
Run from a repository where ``dvc repro`` (and any ``dvc exp run``) has run:

    python benchmarks/screenshots.py --db mlflow.db --out docs
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="mlflow.db")
    ap.add_argument("--experiment", default="facefoundry-default")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--report", default="outputs/report/leaderboard.png")
    ap.add_argument("--size", default="1680,900")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import mlflow

    uri = f"sqlite:///{Path(args.db).resolve()}"
    exp = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(args.experiment)
    if exp is None:
        sys.exit(f"error: {args.db}: no experiment {args.experiment!r}")
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if chromium is None:
            sys.exit("error: no chromium on PATH (apt-get install chromium)")
        url = f"{base}/#/experiments/{exp.experiment_id}/runs"
        shot = out / "mlflow_runs.png"
        width, height = (int(v) for v in args.size.split(","))
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            subprocess.run(
                [
                    chromium,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    f"--window-size={width},{height}",
                    "--virtual-time-budget=30000",
                    f"--screenshot={shot}",
                    url,
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
        else:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                page.wait_for_selector("text=Run Name", timeout=60000)
                page.wait_for_timeout(3000)
                for close in page.locator("[aria-label='Close']").all():  # side panels
                    with contextlib.suppress(Exception):  # not every close button is visible
                        close.click(timeout=1000)
                # expand every pipeline group (parent run), bottom first so rows above do not move
                for button in reversed(page.locator("button[data-component-id*='runnamecellrenderer']").all()):
                    button.click()
                    page.wait_for_timeout(600)
                page.locator("[role=columnheader]", has_text="Created").first.click()  # oldest first:
                page.wait_for_timeout(800)  # pipeline order
                page.mouse.move(5, 5)  # no tooltip over the table
                page.wait_for_timeout(1500)
                page.screenshot(path=str(shot))
                browser.close()
        print(f"{shot}: {url}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    if Path(args.report).is_file():
        shutil.copy(args.report, out / "leaderboard.png")
        print(f"{out / 'leaderboard.png'}: {args.report}")


if __name__ == "__main__":
    main()
