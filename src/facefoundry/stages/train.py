"""``train`` stage: fit, export (model folder + ONNX), log everything to MLflow."""

from __future__ import annotations

from facefoundry.config import Config
from facefoundry.io import atomic_write_json
from facefoundry.models.bundle import RawEmbedding
from facefoundry.plots import curve_figure
from facefoundry.stages.common import dataset_grid, log
from facefoundry.tracking import log_dataset_version, log_figure, log_image, log_metrics, log_torch_model, stage_run
from facefoundry.train.trainer import Trainer


def run_train(cfg: Config) -> dict:
    trainer = Trainer(cfg, log=log)
    log(f"{trainer.source.describe()} on {trainer.device}; "
        f"{'preloaded in RAM' if trainer.feeder.preloaded else 'streaming'}; "
        f"{sum(p.numel() for p in trainer.backbone.parameters()) / 1e6:.2f}M backbone parameters")
    with stage_run(cfg, "train", ["train"], {"facefoundry.dataset": str(trainer.source.root)}) as run:
        digest = log_dataset_version(trainer.source.root, digest=trainer.dataset_digest)
        log_metrics({"data/images": len(trainer.source), "data/identities": trainer.source.num_classes})
        log_image(dataset_grid(trainer.source, seed=cfg.base.seed), "samples/train_grid.png")

        def on_epoch(s) -> None:  # noqa: ANN001
            log_metrics({"train/loss": s.loss, "train/accuracy": s.accuracy, "train/lr": s.lr,
                         "train/images_per_second": s.images_per_second}, step=s.epoch)

        result = trainer.fit(on_epoch)
        hist = result.history
        if hist:
            log_figure(curve_figure("training", {"loss": [h.loss for h in hist],
                                                 "train accuracy": [h.accuracy for h in hist]}), "plots/training.png")
        model = trainer.export({"mlflow_run_id": run.info.run_id, "dataset_dvc_md5": digest})
        log_torch_model(RawEmbedding(model.backbone), cfg.base.image_size, "model")
        final = {"epochs": len(hist), "loss": hist[-1].loss if hist else None,
                 "train_accuracy": hist[-1].accuracy if hist else None,
                 "images_per_second": sum(h.images_per_second for h in hist) / max(1, len(hist)),
                 "mlflow_run_id": run.info.run_id, "dataset_dvc_md5": digest}
        atomic_write_json(f"{cfg.train.out}/metrics.json", final)
        log(f"model saved to {result.model_dir} (run {run.info.run_id})")
        return final
