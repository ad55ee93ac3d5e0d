"""The S3 store's faults and DVC's remote on it: interrupted uploads, and push → pull bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import stack

from facefoundry.data.hashing import dvc_dir_hash
from tests.conftest import make_dataset
from tests.infra.faultproxy import CuttingProxy

pytestmark = pytest.mark.services

BLOB = np.random.default_rng(0).bytes(3 * 1024 * 1024)  # 3 MiB: several TCP segments and s3 chunks


def s3_client(endpoint: str, attempts: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=stack.ACCESS_KEY,
        aws_secret_access_key=stack.SECRET_KEY,
        region_name=stack.REGION,
        config=Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=5, read_timeout=10),
    )


def missing(client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
    return False


def test_an_interrupted_upload_is_retried_and_the_object_is_whole(s3) -> None:
    proxy = CuttingProxy(s3.port, after=1024 * 1024, cuts=1)
    try:
        key = f"fault/{uuid.uuid4().hex}.bin"
        s3_client(proxy.endpoint, attempts=4).put_object(Bucket=s3.bucket, Key=key, Body=BLOB)
        assert proxy.cut == 1  # the link really dropped mid-body
        assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == BLOB
    finally:
        proxy.close()


def test_a_cut_upload_without_retries_leaves_no_partial_object(s3) -> None:
    proxy = CuttingProxy(s3.port, after=1024 * 1024, cuts=10)
    try:
        key = f"fault/{uuid.uuid4().hex}.bin"
        with pytest.raises(Exception):  # noqa: B017 - botocore's connection error, whichever it is
            s3_client(proxy.endpoint, attempts=1).put_object(Bucket=s3.bucket, Key=key, Body=BLOB)
        assert proxy.cut >= 1
        assert missing(s3.client(), s3.bucket, key)  # never a truncated object under the final key
    finally:
        proxy.close()


def test_an_unfinished_multipart_upload_is_never_an_object(s3) -> None:
    c, key = s3.client(), f"fault/{uuid.uuid4().hex}.bin"
    up = c.create_multipart_upload(Bucket=s3.bucket, Key=key)
    c.upload_part(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=BLOB[: 5 * 1024 * 1024])
    assert missing(c, s3.bucket, key)  # parts uploaded, never completed (the client died)
    c.abort_multipart_upload(Bucket=s3.bucket, Key=key, UploadId=up["UploadId"])
    assert missing(c, s3.bucket, key)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_dvc_push_through_a_dropped_link_then_pull_into_a_fresh_clone_is_bit_for_bit(tmp_path, s3) -> None:
    """A generated dataset goes to the S3 remote (the link drops once mid-push; a rerun finishes), and a
    fresh clone pulls exactly the same files. Endpoint and keys live in the local DVC config and the env,
    never in git."""
    dvc = [sys.executable, "-m", "dvc"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": stack.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": stack.SECRET_KEY,
        "AWS_DEFAULT_REGION": stack.REGION,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }
    repo = tmp_path / "repo"
    repo.mkdir()
    make_dataset(repo / "dataset", identities=6, per_identity=5, size=32)
    remote = f"s3://{s3.bucket}/dvc-{uuid.uuid4().hex[:8]}"
    proxy = CuttingProxy(s3.port, after=3_000, cuts=1)
    try:
        for cmd in (
            ["git", "init", "-q"],
            [*dvc, "init", "-q"],
            [*dvc, "add", "-q", "dataset"],
            [*dvc, "remote", "add", "-d", "storage", remote],
            [*dvc, "remote", "modify", "--local", "storage", "endpointurl", proxy.endpoint],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "dataset"],
        ):
            out = _run(cmd, repo, env)
            assert out.returncode == 0, (cmd, out.stderr[-1500:])
        first = _run([*dvc, "push"], repo, env)
        if first.returncode != 0:  # the drop surfaced: a rerun completes what is missing
            second = _run([*dvc, "push"], repo, env)
            assert second.returncode == 0, second.stderr[-1500:]
        assert proxy.cut == 1
    finally:
        proxy.close()
    assert "endpointurl" not in (repo / ".dvc" / "config").read_text()  # the endpoint is not committed

    clone = tmp_path / "clone"
    assert _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env).returncode == 0
    assert not (clone / "dataset").exists()
    assert (
        _run([*dvc, "remote", "modify", "--local", "storage", "endpointurl", s3.endpoint], clone, env).returncode == 0
    )
    pulled = _run([*dvc, "pull"], clone, env)
    assert pulled.returncode == 0, pulled.stderr[-1500:]
    assert dvc_dir_hash(clone / "dataset") == dvc_dir_hash(repo / "dataset")
    for f in sorted(p for p in (repo / "dataset").rglob("*") if p.is_file()):
        assert (clone / "dataset" / f.relative_to(repo / "dataset")).read_bytes() == f.read_bytes()
