"""Load test of the at-scale tracking stack: metrics and artifacts through an MLflow server on PostgreSQL
with S3 artifacts, from concurrent clients, with zero loss.

    python benchmarks/tracking_load.py                       # starts its own stack (infra/stack.py), then stops it
    python benchmarks/tracking_load.py --url http://…:5000   # against a running server (infra/up.sh)
    python benchmarks/tracking_load.py --compare             # without, then with authentication (up.sh --auth)

Default: 4 client processes × 2,500 metric values (logged in batches of 50, as a training loop's steps)
and 250 artifacts each (10,000 metrics, 1,000 artifacts in all). Then every metric history and every
artifact is read back and compared byte for byte. Prints (and with --json writes) the throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _client(url: str, exp_id: str, k: int, metrics: int, artifacts: int, batch: int, q) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    c = MlflowClient(tracking_uri=url)
    run = c.create_run(exp_id, run_name=f"client-{k}")
    rid = run.info.run_id
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for s in range(0, metrics, batch):
        c.log_batch(
            rid, metrics=[Metric("loss", float(k * 1e6 + i), now, i) for i in range(s, min(s + batch, metrics))]
        )
    t_metrics = time.perf_counter() - t0
    sums = {}
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        for a in range(artifacts):
            p = Path(tmp) / f"artifact_{a:04d}.bin"
            data = hashlib.sha256(f"{k}/{a}".encode()).digest() * 64  # 2 KiB, distinct per client and file
            p.write_bytes(data)
            sums[p.name] = hashlib.sha256(data).hexdigest()
            c.log_artifact(rid, str(p), "load")
        t_art = time.perf_counter() - t1
    c.set_terminated(rid)
    q.put({"run": rid, "k": k, "metrics_s": t_metrics, "artifacts_s": t_art, "sums": sums})


def verify(url: str, result: dict, metrics: int) -> tuple[int, int]:
    """(metrics lost or wrong, artifacts lost or wrong) of one client's run."""
    import mlflow
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=url)
    hist = sorted(c.get_metric_history(result["run"], "loss"), key=lambda m: m.step)
    want = [float(result["k"] * 1e6 + i) for i in range(metrics)]
    bad_m = sum(1 for a, b in zip([m.value for m in hist], want) if a != b) + abs(len(hist) - metrics)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=result["run"], artifact_path="load", tracking_uri=url, dst_path=tmp
            )
        )
        got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in local.iterdir()}
    bad_a = sum(1 for n, h in result["sums"].items() if got.get(n) != h)
    return bad_m, bad_a


def _start(folder: Path, auth: bool, parts: list) -> str:
    """A local stack's MLflow URL. ``auth``: ``infra/up.sh --auth``'s stack (basic-auth, PostgreSQL password),
    the clients signed in as a researcher (their credentials in the environment the client processes inherit)."""
    import stack

    if auth:
        import stack_auth

        from facefoundry.tracking.access import grant

        state = stack.up(folder / "stack", ray=False, auth=True)
        parts.append(lambda: stack.down(folder / "stack"))
        os.environ.update(stack_auth.admin_env(stack_auth.Secrets(folder / "stack")))
        password = grant(state["mlflow"], "load-researcher", "researcher")
        os.environ.update(MLFLOW_TRACKING_USERNAME="load-researcher", MLFLOW_TRACKING_PASSWORD=password or "")
        return state["mlflow"]
    pg = stack.Postgres(folder / "pg").start()
    parts.append(lambda: pg.stop(remove=True))
    s3 = stack.S3Server(folder).start()
    parts.append(s3.stop)
    ml = stack.MlflowServer(folder, pg.url, f"s3://{s3.bucket}/mlflow", s3.env).start()
    parts.append(ml.stop)
    return ml.url


def load(a, auth: bool) -> dict:
    parts: list = []
    folder = Path(tempfile.mkdtemp(prefix="ff_load_"))
    try:
        url = a.url or _start(folder, auth, parts)
        from mlflow import MlflowClient

        exp_id = MlflowClient(tracking_uri=url).create_experiment(f"load-{time.time_ns()}")
        q = mp.get_context("spawn").Queue()
        procs = [
            mp.get_context("spawn").Process(target=_client, args=(url, exp_id, k, a.metrics, a.artifacts, a.batch, q))
            for k in range(a.clients)
        ]
        t0 = time.perf_counter()
        for pr in procs:
            pr.start()
        results = [q.get(timeout=3600) for _ in procs]
        for pr in procs:
            pr.join()
        wall = time.perf_counter() - t0
        lost_m = lost_a = 0
        for r in results:
            m, art = verify(url, r, a.metrics)
            lost_m, lost_a = lost_m + m, lost_a + art
        n_m, n_a = a.clients * a.metrics, a.clients * a.artifacts
        return {
            "auth": auth,
            "clients": a.clients,
            "metrics": n_m,
            "artifacts": n_a,
            "wall_s": round(wall, 1),
            "metrics_per_s": round(n_m / max(r["metrics_s"] for r in results) if results else 0, 1),
            "artifacts_per_s": round(n_a / max(r["artifacts_s"] for r in results) if results else 0, 1),
            "lost_metrics": lost_m,
            "lost_artifacts": lost_a,
        }
    finally:
        for stop in reversed(parts):
            stop()
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(k, None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running MLflow server (default: start a local stack)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--metrics", type=int, default=2500, help="per client")
    p.add_argument("--artifacts", type=int, default=250, help="per client")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--auth", action="store_true", help="the authenticated stack (infra/up.sh --auth)")
    p.add_argument("--compare", action="store_true", help="without then with --auth, one after the other")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    outs = [load(a, False), load(a, True)] if a.compare else [load(a, a.auth)]
    for out in outs:
        print(json.dumps(out))
    if a.json:
        a.json.write_text(json.dumps(outs if a.compare else outs[0], indent=1))
    return 0 if all(o["lost_metrics"] == o["lost_artifacts"] == 0 for o in outs) else 1


if __name__ == "__main__":
    sys.exit(main())
