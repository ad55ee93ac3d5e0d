"""SynFace figures for the README: identity mixup and domain mixup, each judged on twins and real faces.

    bash experiments/synface.sh            # first: trains and evaluates every recipe
    python benchmarks/synface_figures.py   # → docs/synface_identity_mixup.png, docs/synface_domain_mixup.png

Reads each recipe's evaluation (outputs/synface/<name>/eval/metrics.json) and draws one bar chart per
study: 10-fold accuracy ± std on the synthetic twins and on the real benchmark, with the raw-pixel floor
of the real benchmark's README. The figures and a table also go to MLflow (experiment facefoundry-synface,
run "synface figures"). Writes benchmarks/results/synface.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STUDIES = {
    "identity_mixup": (
        "Identity mixup on the renders (100 × 16)",
        [
            ("render", "none"),
            ("render_mixup_syn3", "φ ∈ 0.6…1.0 (Syn3)"),
            ("render_mixup_syn2", "φ = 0.8 (Syn2)"),
            ("render_mixup_official", "φ ∈ 0…1.0 (official)"),
        ],
    ),
    "domain_mixup": (
        "Domain mixup across two generators",
        [
            ("render", "renders"),
            ("vec2face", "toy Vec2Face"),
            ("render+vec2face", "renders ⊕ Vec2Face, ψ official"),
            ("render+vec2face_psi0.8", "renders ⊕ Vec2Face, ψ = 0.8"),
            ("vec2face+render", "Vec2Face ⊕ renders, ψ official"),
        ],
    ),
}
RAW_PIXELS = 0.570  # ../shared/data/real_verification/README.md


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    os.chdir(root)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks._common import save

    results: dict[str, list[dict]] = {}
    figures = {}
    for study, (title, recipes) in STUDIES.items():
        rows = []
        for name, label in recipes:
            path = Path("outputs/synface") / name / "eval" / "metrics.json"
            if not path.is_file():
                print(f"warning: {path}: missing (run experiments/synface.sh); left out", file=sys.stderr)
                continue
            m = json.loads(path.read_text())
            rows.append(
                {
                    "recipe": name,
                    "label": label,
                    **{
                        f"{b}_{k}": m.get(f"{b}_{k}")
                        for b in ("twins", "real", "synlfw", "synlfw_r08")
                        for k in ("accuracy", "accuracy_std", "auc", "tar_at_far_1e-02")
                    },
                }
            )
        results[study] = rows
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(9.5, 4.0))
        x = range(len(rows))
        for off, bench, colour, label in (
            (-0.27, "twins", "#4c72b0", "synthetic twins"),
            (0.0, "synlfw", "#55a868", "Syn-LFW (the real benchmark's rendered twin)"),
            (0.27, "real", "#dd8452", "real (CelebA pairs, evaluation only)"),
        ):
            acc = [100 * (r[f"{bench}_accuracy"] or 0) for r in rows]
            std = [100 * (r[f"{bench}_accuracy_std"] or 0) for r in rows]
            bars = ax.bar([i + off for i in x], acc, 0.27, yerr=std, capsize=2, color=colour, label=label)
            for b, a, e in zip(bars, acc, std):
                ax.text(b.get_x() + b.get_width() / 2, a + e + 0.5, f"{a:.1f}", ha="center", va="bottom", fontsize=6.5)
        ax.axhline(100 * RAW_PIXELS, color="grey", ls="--", lw=1, label="real: raw-pixel floor 57.0")
        ax.set_xticks(list(x), [r["label"] for r in rows], fontsize=8, rotation=12)
        ax.set_ylabel("10-fold accuracy (%)")
        ax.set_ylim(45, 105)
        ax.set_title(f"SynFace: {title}", fontsize=10)
        ax.legend(fontsize=6.5, loc="upper right", ncol=2)
        fig.tight_layout()
        out = Path("docs") / f"synface_{study}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        figures[study] = out
        print(f"wrote {out}")
    save("synface", {"studies": results})
    try:
        import mlflow

        from facefoundry.config import load_config

        cfg = load_config("params.yaml")
        mlflow.set_tracking_uri(cfg.base.tracking_uri)
        mlflow.set_experiment("facefoundry-synface")
        with mlflow.start_run(run_name="synface figures"):
            for out in figures.values():
                mlflow.log_artifact(str(out), "figures")
            mlflow.log_dict(results, "synface.json")
    except Exception as exc:  # the figures are written either way
        print(f"warning: not logged to MLflow ({exc})".splitlines()[0], file=sys.stderr)


if __name__ == "__main__":
    main()
