"""IDSync λ study: does the identity loss make one identity's images more alike? (README figure)

    python benchmarks/idsync_lambda.py [--lambdas 0 0.001 0.01] [--epochs 8] [--identities 50 --per 8]

Needs the embedded default's outputs first (`dvc repro`: the renders and the render-trained FR model,
which is the CE loss's frozen classifier). For each λ, the same recipe — params.yaml's `idsync` section
(CE identity loss; λ = 0 is Arc2Face), the same seed and one shared VAE — trains IDSync, generates
`identities × per` images from the same sampled vectors, and two judges embed every image:
**dlib** (independent of the loss: it only gave the conditioning vectors) and the **CE classifier**
itself (the network the loss pushes on). Reported per judge: intra-class and inter-class cosine
(mean, std) and d′. Every training and generation is an MLflow run in experiment
`facefoundry-idsync-lambda`, grouped under one parent, which also gets the figure and the table.
Writes benchmarks/results/idsync_lambda.{json,png}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from benchmarks._common import RESULTS, save
    from facefoundry.config import load_config
    from facefoundry.data.sources import open_source
    from facefoundry.errors import FaceFoundryError
    from facefoundry.identity import load_encoder
    from facefoundry.identity.judge import consistency_metrics, identity_similarities
    from facefoundry.stages.generate import run_generate
    from facefoundry.stages.generator import run_train_generator

    ap = argparse.ArgumentParser()
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.001, 0.01])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--identities", type=int, default=50)
    ap.add_argument("--per", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="outputs/idsync_lambda")
    args = ap.parse_args()
    os.chdir(root)
    base = load_config("params.yaml")
    for need in (base.idsync.dataset, base.idsync.classifier):
        if not Path(need).exists():
            print(
                f"error: {need}: missing; run `dvc repro` first (the renders and the render FR model)", file=sys.stderr
            )
            raise SystemExit(2)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("FACEFOUNDRY_PIPELINE_ID", f"idsync-lambda-{int(time.time())}")
    os.environ.setdefault("FACEFOUNDRY_PIPELINE_NAME", "benchmarks/idsync_lambda.py")
    out = Path(args.out)
    judges = {"dlib": load_encoder("dlib").eval(), "classifier": load_encoder(base.idsync.classifier).eval()}
    rows = []
    for lam in args.lambdas:
        tag = f"{lam:g}"
        sets = [
            f"idsync.identity_weight={lam}",
            f"idsync.out={out}/lambda_{tag}",
            f"idsync.cache={out}/cache",
            f"idsync.epochs={args.epochs}",
            f"idsync.threads={args.threads}",
            "base.experiment=facefoundry-idsync-lambda",
            "generate.generator=idsync",
            f"generate.out={out}/lambda_{tag}/dataset",
            f"generate.identities={args.identities}",
            f"generate.images_per_identity={args.per}",
            f"generate.batch_size={args.identities * args.per // 4}",
            f"generate.idsync.model={out}/lambda_{tag}/model",
            "generate.idsync.judge_images=0",
        ]
        cfg = load_config("params.yaml", sets=sets)
        t0 = time.perf_counter()
        try:
            run_train_generator(cfg, "idsync")
            t1 = time.perf_counter()
            run_generate(cfg)
        except FaceFoundryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        src = open_source(cfg.generate.out)
        images = np.stack([src.load(i) for i in range(len(src))])
        row = {
            "lambda": lam,
            "train_seconds": t1 - t0,
            "generate_seconds": time.perf_counter() - t1,
            "conditioning_effect": effect(cfg),
        }
        for name, enc in judges.items():
            intra, inter = identity_similarities(enc.embed(images, batch_size=64), src.labels)
            row.update({f"{name}_{k}": v for k, v in consistency_metrics(intra, inter).items()})
        rows.append(row)
        print(f"λ={tag}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "lambda"), flush=True)

    fig = figure(rows)
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "idsync_lambda.png", dpi=110, bbox_inches="tight")
    result = {
        "recipe": {
            "dataset": base.idsync.dataset,
            "identity_loss": base.idsync.identity_loss,
            "epochs": args.epochs,
            "identities": args.identities,
            "images_per_identity": args.per,
            "seed": base.base.seed,
            "steps": base.generate.idsync.steps,
            "guidance": base.generate.idsync.guidance,
        },
        "rows": rows,
    }
    save("idsync_lambda", result)
    from facefoundry.tracking import log_figure, log_metrics, stage_run

    cfg = load_config("params.yaml", sets=["base.experiment=facefoundry-idsync-lambda"])
    with stage_run(cfg, "idsync-lambda-study", ["idsync"], name="idsync λ study"):
        for i, r in enumerate(rows):
            log_metrics({k: v for k, v in r.items() if isinstance(v, float)}, step=i)
        log_figure(fig, "plots/idsync_lambda.png")
        import mlflow

        mlflow.log_dict(result, "idsync_lambda.json")


def effect(cfg) -> float:
    """Pixel spread across identities at one noise ÷ across noises at one identity (0: conditioning ignored)."""
    import torch

    from facefoundry.generators.idsync.generate import conditioning_effect
    from facefoundry.generators.idsync.model import conditioning_space, load_identity_vectors, load_model_folder

    model = load_model_folder(cfg.generate.idsync.model)
    raw, _, mean = load_identity_vectors(cfg.generate.idsync.model)
    rng = np.random.default_rng(0)
    v = conditioning_space(raw[rng.choice(len(raw), 6, replace=False)], mean)
    return conditioning_effect(model, torch.from_numpy(v), cfg.generate.idsync, cfg.base.seed)


def figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = np.arange(len(rows))
    labels = [f"λ = {r['lambda']:g}" + (" (Arc2Face)" if r["lambda"] == 0 else "") for r in rows]
    for ax, judge, title in zip(
        axes, ("dlib", "classifier"), ("judge: dlib (not in the loss)", "judge: the CE classifier (the loss's)")
    ):
        for kind, colour in (("intra", "tab:blue"), ("inter", "tab:red")):
            m = [r[f"{judge}_{kind}_mean"] for r in rows]
            s = [r[f"{judge}_{kind}_std"] for r in rows]
            ax.errorbar(xs, m, yerr=s, marker="o", capsize=4, color=colour, label=f"{kind}-class cosine (mean ± std)")
        for x, r in zip(xs, rows):
            ax.annotate(
                f"d′ {r[f'{judge}_d_prime']:.2f}",
                (x, r[f"{judge}_intra_mean"]),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
            )
        ax.set_xticks(xs, labels)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cosine similarity")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("IDSync on the renders: same-identity vs different-identity similarity of generated images")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
