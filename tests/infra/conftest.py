"""Fixtures that start the real components (PostgreSQL, an S3 server, an MLflow server, Ray) and stop them.

A component that cannot start here skips the tests that need it, with the reason (pytest's ``-ra``
summary, which CI prints, counts them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))

import stack  # infra/stack.py: the same launchers as infra/up.sh


def _start(component, what: str):
    try:
        return component.start()
    except (stack.StackError, OSError, ImportError) as exc:
        pytest.skip(f"{what} cannot start here: {exc}")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    pg = _start(stack.Postgres(tmp_path_factory.mktemp("pg")), "PostgreSQL")
    yield pg
    pg.stop(remove=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    server = _start(stack.S3Server(tmp_path_factory.mktemp("s3")), "S3 server (moto)")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, postgres, s3):
    server = _start(
        stack.MlflowServer(tmp_path_factory.mktemp("mlflow"), postgres.url, f"s3://{s3.bucket}/mlflow", s3.env),
        "MLflow server",
    )
    yield server
    server.stop()
