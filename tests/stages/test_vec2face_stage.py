"""train-vec2face and generate --generator vec2face through the CLI: real dlib encoder, real MLflow store."""

from pathlib import Path

import mlflow
import pytest

from facefoundry.data.manifest import read_manifest
from tests.conftest import make_dataset, tiny_config
from tests.generators.vec2face import TINY_VEC2FACE
from tests.stages.test_cli_pipeline import assert_one_line_error, ff

pytestmark = pytest.mark.e2e

V2F = {
    **TINY_VEC2FACE,
    "epochs": 1,
    "warmup_epochs": 0,
    "disc_start_epoch": 0,
    "base_lr": 0.02,
    "threads": 1,
}


def test_train_then_generate_logs_sigma_grid_and_judges(tmp_path: Path) -> None:
    make_dataset(tmp_path / "photos", identities=8, per_identity=2, size=32)
    tiny_config(
        tmp_path,
        vec2face={**V2F, "epochs": 2, "dataset": str(tmp_path / "photos"), "out": str(tmp_path / "v2f")},
        generate={
            "out": str(tmp_path / "datasets" / "render"),
            "identities": 4,
            "images_per_identity": 3,
            "batch_size": 8,
            "vec2face": {
                "model": str(tmp_path / "v2f" / "model"),
                "tau": 0.9,
                "judge_images": 40,
                "grid_identities": 2,
                "attrop": {"enabled": True, "yaw_targets": [], "max_iters": 2},
            },
        },
        identity={"judges": ["dlib"]},
    )
    missing = ff(tmp_path, "generate", "--generator", "vec2face")
    assert_one_line_error(missing, "vec2face_model.json", "missing")

    proc = ff(tmp_path, "train-vec2face", "--stop-after", "1")  # preempted after epoch 1 …
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = ff(tmp_path, "train-vec2face")  # … resumes into the same MLflow run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "v2f" / "model" / "id_vectors.npy").is_file()
    assert (tmp_path / "v2f" / "metrics.json").is_file()
    proc = ff(tmp_path, "generate", "--generator", "vec2face")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "datasets" / "vec2face"  # beside generate.out, never over the render dataset
    m = read_manifest(out)
    assert len(m) == 12 and m.meta["generator"] == "vec2face" and not (tmp_path / "datasets" / "render").exists()

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    by_stage = {r.data.tags["facefoundry.stage"]: r for r in runs if r.info.status == "FINISHED"}
    gen = by_stage["generate"]
    assert "samples/sigma_grid.png" in {a.path for a in client.list_artifacts(gen.info.run_id, "samples")}
    metrics = gen.data.metrics
    for k in (
        "judge_dlib_same_vector",
        "judge_dlib_different_vectors",
        "judge_dlib_intra_sigma_0.3",
        "judge_dlib_intra_sigma_0.7",
        "judge_sface_intra_sigma_0.3",  # the σ study's independent judge: the generator learnt in dlib's space
        "attrop_converged",
        "generation_images_per_second",
    ):
        assert k in metrics, k
    train = by_stage["train-vec2face"]
    assert len([r for r in runs if r.data.tags["facefoundry.stage"] == "train-vec2face"]) == 1
    assert train.data.tags["resumed_from_epoch"] == "1"
    assert "vec2face/identity" in train.data.metrics
    assert "samples/vec2face_reconstruction.png" in {
        a.path for a in client.list_artifacts(train.info.run_id, "samples")
    }
