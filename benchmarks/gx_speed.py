"""Great Expectations quality gates on a large manifest: seconds for the frame and for run_gates.

    python benchmarks/gx_speed.py [--rows 100000] [--identities 10000]

A synthetic manifest (``--rows`` images over ``--identities`` identities, distinct made-up sha256, every
image 112²) and a metrics dict with every threshold of ``quality.gates`` set and met. Timed, once each
(GX's first call pays its imports and registries; that import is reported on its own):

* ``manifest_frame_s``: Manifest → DataFrame with ``identity_images``;
* ``run_gates_data_docs_s``: both suites through Checkpoints that build the Data Docs HTML site;
* ``run_gates_s``: both suites without Data Docs (ValidationDefinition.run);
* ``run_gates_failing_s``: without Data Docs, with 1 % of images the wrong size and 100 exact copies, so
  the unexpected-row examples are collected.

The issue's target: the whole gate (frame + run_gates with Data Docs) under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facefoundry.data.manifest import Manifest


def synthetic_manifest(rows: int, identities: int, size: int) -> Manifest:
    """``rows`` images spread evenly over ``identities`` labels, each with its own sha256."""
    from facefoundry.data.manifest import Manifest

    labels = [i % identities for i in range(rows)]
    return Manifest(
        path=[f"images/{lab:06d}/{i:08d}.png" for i, lab in enumerate(labels)],
        label=labels,
        identity=[f"person_{lab}" for lab in labels],
        source=["bench"] * rows,
        params=["{}"] * rows,
        width=[size] * rows,
        height=[size] * rows,
        sha256=[f"{i:064x}" for i in range(rows)],
        meta={"num_classes": identities, "image_size": size},
    )


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._common import save

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--identities", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=112)
    args = ap.parse_args()

    t0 = time.perf_counter()
    from facefoundry.config import GatesCfg
    from facefoundry.quality.gates import manifest_frame, run_gates

    import_s = time.perf_counter() - t0

    gates = GatesCfg(
        min_images_per_identity=2,
        min_identities=2,
        max_duplicate_images=0,
        max_near_duplicate_images=0,
        max_mislabelled_fraction=0.05,
        max_mislabelled_identities=0,
        min_intra_mean=0.3,
        max_inter_mean=0.2,
        min_separability=0.9,
        max_leaked_identities=0,
    )
    metrics = {
        "identities": args.identities,
        "duplicate_images": 0,
        "near_duplicate_images": 0,
        "mislabelled_fraction": 0.01,
        "mislabelled_identities": 0,
        "intra_mean": 0.55,
        "inter_mean": 0.02,
        "separability": 0.97,
        "leaked_identities": 0,
    }
    manifest = synthetic_manifest(args.rows, args.identities, args.size)
    res: dict = {"rows": args.rows, "identities": args.identities, "import_s": import_s}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        frame = manifest_frame(manifest)
        res["manifest_frame_s"] = time.perf_counter() - t0
        for key, docs in (("run_gates_data_docs_s", True), ("run_gates_s", False)):
            t0 = time.perf_counter()
            out = run_gates(frame, metrics, gates, args.size, Path(tmp) / key, data_docs=docs)
            res[key] = time.perf_counter() - t0
            assert out.success, out.summary()
            res["expectations"] = out.statistics["evaluated_expectations"]

        bad = frame.copy()
        wrong = bad.index[::100]
        bad.loc[wrong, "width"] = args.size + 1
        bad.loc[bad.index[1:101], "sha256"] = bad["sha256"].iloc[0]
        t0 = time.perf_counter()
        out = run_gates(bad, metrics, gates, args.size, Path(tmp) / "failing", data_docs=False)
        res["run_gates_failing_s"] = time.perf_counter() - t0
        assert not out.success
        res["failing_summary"] = out.summary()
    res["gate_total_data_docs_s"] = res["manifest_frame_s"] + res["run_gates_data_docs_s"]
    res["target_s"] = 60.0
    save("gx_speed", res)


if __name__ == "__main__":
    main()
