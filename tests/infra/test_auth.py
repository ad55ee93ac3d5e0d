"""The authenticated team server (``infra/up.sh --auth``), against the real servers: PostgreSQL with a
scram-sha-256 password, the S3 store with this stack's own keys, ``mlflow server --app-name basic-auth``.

One stack for the module (``stack.up(auth=True)``, the code ``infra/up.sh --auth`` runs); the users are made
with ``facefoundry access grant`` as the admin: a reader, a researcher and a maintainer. Checked: anonymous
requests are refused (401) for the REST API and an artifact download; a reader reads runs and the leaderboard
(ranked and printed, not logged) but may not log or register (403, one line from the platform); a researcher logs
runs and registers versions but may not promote (one line, exit 2, nothing half-done); a maintainer promotes; a
wrong password is one line at once; no secret in any param, tag, artifact, log line, promoted.yaml or card; the
server killed under a researcher's stage, brought back by ``up --auth``, the stage resumed (the outage test).
The researcher's sweep on a token-authenticated Ray cluster: tests/sweep/test_cluster.py."""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stack
import stack_auth

from tests.conftest import tiny_config

pytestmark = pytest.mark.services

NAME = "facefoundry-fr"  # researchers register versions here
CHAMPION = "facefoundry-fr-champion"  # promote.registered_model: the champion's own model, researchers read it
ROLES = {"rd": "reader", "rs": "researcher", "mt": "maintainer"}


def _base_env() -> dict[str, str]:
    drop = ("MLFLOW_", "AWS_", "FACEFOUNDRY_PARENT_RUN_ID", "FACEFOUNDRY_PIPELINE", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["GIT_PYTHON_REFRESH"] = "quiet"
    return env


@dataclass
class Team:
    folder: Path  # the stack's state folder
    work: Path  # params.yaml, outputs
    url: str
    state: dict
    admin: dict[str, str]
    passwords: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # every line the platform printed

    def creds(self, user: str, password: str | None = None) -> dict[str, str]:
        if user == "admin":
            return dict(self.admin)
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password or self.passwords[user]}

    def ff(self, user: str | None, *args: str, password: str | None = None, home: Path | None = None):
        env = _base_env()
        env.update(MLFLOW_TRACKING_URI=self.url, FACEFOUNDRY_PIPELINE_ID="team-tests")
        if user is not None:
            env.update(self.creds(user, password))
        if home is not None:
            env["HOME"] = str(home)
        cmd = [sys.executable, "-m", "facefoundry", "--params", str(self.work / "params.yaml"), *args]
        proc = subprocess.run(cmd, cwd=self.work, capture_output=True, text=True, env=env, timeout=300)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def secrets(self) -> dict[str, str]:
        store = stack_auth.Secrets(self.folder)
        return {
            **{n: store.get(n) for n in stack_auth.NAMES if not n.startswith("FACEFOUNDRY_RAY")},  # no Ray here
            **{f"password of {u}": p for u, p in self.passwords.items()},
        }


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    folder = root / ".stack"
    printed = io.StringIO()
    try:
        state = stack.up(folder, ray=False, auth=True)
    except (stack.StackError, OSError, ImportError) as exc:
        pytest.skip(f"the authenticated stack cannot start here: {exc}")
    try:
        with contextlib.redirect_stdout(printed):
            stack.print_env(state, folder)
        work = root / "work"
        tiny_config(
            work,
            base={"tracking_uri": state["mlflow"], "experiment": "team"},
            train={"registered_model": NAME},
            promote={
                "registered_model": CHAMPION,
                "out": str(work / "promoted.yaml"),
                "card": str(work / "promoted_card.md"),
            },
            evaluate={"benchmarks": {"twins": str(work / "twins.bin")}},
        )
        t = Team(folder, work, state["mlflow"], state, stack_auth.admin_env(stack_auth.Secrets(folder)))
        t.outputs.append(printed.getvalue())
        # the platform's own CLI, as the admin: the user made, its password in a 0600 file and nowhere else
        out = t.ff("admin", "access", "grant", "rd", "reader", "--credentials-out", str(root / "rd.cred"))
        assert out.returncode == 0, out.stderr[-2000:]
        assert (root / "rd.cred").stat().st_mode & 0o777 == 0o600
        ini = configparser.ConfigParser()
        ini.read(root / "rd.cred")
        t.passwords["rd"] = ini["mlflow"]["mlflow_tracking_password"]
        from facefoundry.tracking.access import grant, roles_of

        with pytest.MonkeyPatch.context() as mp:  # the same call, in this process (one CLI start less)
            for k, v in t.admin.items():
                mp.setenv(k, v)
            for user in ("rs", "mt"):
                t.passwords[user] = grant(t.url, user, ROLES[user])
            assert {u: roles_of(t.url, u) for u in ROLES} == {u: [r] for u, r in ROLES.items()}
        yield t
    finally:
        stack.down(folder)


@pytest.fixture(scope="module")
def runs(team):
    """What a researcher's pipeline leaves (generate, validate, train with a registered version, evaluate),
    logged with the researcher's credentials, from the environment."""
    from facefoundry.config import load_config
    from tests.test_promote import fake_recipe

    cfg = load_config(team.work / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
            mp.delenv(k)
        mp.setenv("FACEFOUNDRY_PIPELINE_ID", "team-tests")
        for k, v in team.creds("rs").items():
            mp.setenv(k, v)
        run_id, _ = fake_recipe(team.work, cfg, "render", {"twins": 0.7})
    return run_id


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _one_line(proc) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    return err


def _client(team: Team, user: str, mp: pytest.MonkeyPatch):
    from mlflow import MlflowClient

    for k, v in team.creds(user).items():
        mp.setenv(k, v)
    return MlflowClient(tracking_uri=team.url)


def test_up_auth_keeps_its_secrets_in_0600_files_and_postgres_asks_for_a_password(team) -> None:
    import psycopg2

    for name in ("secrets.env", "client.env", "basic_auth.ini", "state.json"):
        assert (team.folder / name).stat().st_mode & 0o777 == 0o600, name
    secrets = team.secrets()
    plain = {
        "state.json": (team.folder / "state.json").read_text(),
        "basic_auth.ini": (team.folder / "basic_auth.ini").read_text(),
        "what up printed": team.outputs[0],
        "the MLflow server's command line": Path(f"/proc/{team.state['mlflow_pid']}/cmdline").read_text(),
    }
    leaks = [f"{s} in {where}" for s, v in secrets.items() for where, text in plain.items() if v in text]
    assert not leaks, leaks
    assert stack_auth.mask(secrets["FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD"]) in team.outputs[0]
    assert secrets["FACEFOUNDRY_S3_SECRET_KEY"] != stack.SECRET_KEY  # this stack's own S3 keys
    port = int(team.state["postgres"].rsplit(":", 1)[1].split("/")[0])
    for wrong in (None, "not-the-password"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(host=stack.HOST, port=port, user="postgres", dbname="mlflow", password=wrong)
    pw = secrets["FACEFOUNDRY_POSTGRES_PASSWORD"]
    conn = psycopg2.connect(host=stack.HOST, port=port, user="postgres", dbname="mlflow", password=pw)
    with conn, conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone() == ("127.0.0.1",)
        cur.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
        assert {r[0] for r in cur.fetchall()} == {"scram-sha-256"}
        cur.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'")
        assert cur.fetchone() == (True,)
    conn.close()


def test_anonymous_requests_are_refused_401_for_the_api_and_artifacts(team, tmp_path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        admin = _client(team, "admin", mp)
        exp = admin.get_experiment_by_name("anon-probe") or admin.get_experiment(admin.create_experiment("anon-probe"))
        run = admin.create_run(exp.experiment_id)
        (tmp_path / "note.txt").write_text("hello")
        admin.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    rid, eid = run.info.run_id, exp.experiment_id
    api = f"{team.url}/api/2.0/mlflow/runs/get?run_id={rid}"
    artifact = f"{team.url}/api/2.0/mlflow-artifacts/artifacts/{eid}/{rid}/artifacts/note.txt"
    get_artifact = f"{team.url}/get-artifact?path=note.txt&run_uuid={rid}"
    for url in (api, artifact, get_artifact):
        assert _get(url) == 401, url
        assert _get(url, ("rd", "wrong-password")) == 401, url
    assert _get(artifact, ("admin", team.admin["MLFLOW_TRACKING_PASSWORD"])) == 200
    assert _get(artifact, ("rd", team.passwords["rd"])) == 200  # a reader reads artifacts


def test_a_reader_reads_runs_and_the_leaderboard_but_may_not_log_or_register(team, runs) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from facefoundry.leaderboard import build
    from facefoundry.stages.report import training_runs

    with pytest.MonkeyPatch.context() as mp:
        c = _client(team, "rd", mp)
        exp = c.get_experiment_by_name("team")
        assert runs in {r.info.run_id for r in c.search_runs([exp.experiment_id])}
        mlflow.set_tracking_uri(team.url)
        board = build(training_runs(["team"]), include_adhoc=True, metric="twins")  # what the leaderboard ranks
        assert [r.recipe for r in board.rows] == ["render"]
        with pytest.raises(MlflowException, match="403"):
            c.log_metric(runs, "sneaky", 1.0)
        with pytest.raises(MlflowException, match="403"):
            c.create_model_version(NAME, f"runs:/{runs}/model", runs)
    # the platform's leaderboard: ranked and printed for a reader; not logged, and one line says why and who grants it
    shown = team.ff("rd", "leaderboard", "--metric", "twins")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr[-2000:]
    assert "render" in shown.stdout  # the table
    note = [line for line in shown.stderr.splitlines() if "not logged to MLflow" in line]
    assert len(note) == 1 and "'rd' may not log to a run" in note[0] and "grant rd researcher" in note[0], note
    # a change the platform attempts for a reader: one line naming what is missing
    err = _one_line(team.ff("rd", "access", "grant", "someone", "maintainer"))
    assert "'rd' may not" in err and "403" in err, err


def test_a_researcher_registers_versions_but_promoting_is_refused_and_changes_nothing(team, runs) -> None:
    with pytest.MonkeyPatch.context() as mp:
        c = _client(team, "admin", mp)
        versions = c.search_model_versions(f"name = '{NAME}'")
        assert [v.run_id for v in versions] == [runs]  # registered with the researcher's credentials
    err = _one_line(team.ff("rs", "promote", "--metric", "twins", "--no-gate", "--force"))
    assert f"promote refused: user 'rs' has READ on registered model '{CHAMPION}'" in err, err
    assert "needs MANAGE" in err, err
    with pytest.MonkeyPatch.context() as mp:
        aliases = _client(team, "admin", mp).get_registered_model(CHAMPION).aliases
        assert not {"champion", "previous"} & set(aliases), aliases  # no alias moved
        assert not _client(team, "admin", mp).search_model_versions(f"name = '{CHAMPION}'")
    assert not (team.work / "promoted.yaml").exists() and not (team.work / "promoted_card.md").exists()


def test_a_maintainer_promotes_and_no_secret_is_anywhere(team, runs, tmp_path) -> None:
    proc = team.ff("mt", "promote", "--metric", "twins", "--no-gate", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    from mlflow.exceptions import MlflowException

    with pytest.MonkeyPatch.context() as mp:  # the server itself: a researcher may not move the champion's aliases
        rs = _client(team, "rs", mp)
        for attempt in (
            lambda: rs.set_registered_model_alias(CHAMPION, "champion", "1"),
            lambda: rs.delete_registered_model_alias(CHAMPION, "champion"),
            lambda: rs.create_model_version(CHAMPION, f"runs:/{runs}/model", runs),
        ):
            with pytest.raises(MlflowException, match="403"):
                attempt()
        rs.set_registered_model_alias(NAME, "mine", "1")  # its own registry model: EDIT
    with pytest.MonkeyPatch.context() as mp:
        c = _client(team, "admin", mp)
        assert c.get_registered_model(CHAMPION).aliases["champion"] == "1"
        records = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id], max_results=1000)]
    texts = {
        "promoted.yaml": (team.work / "promoted.yaml").read_text(),
        "promoted_card.md": (team.work / "promoted_card.md").read_text(),
        "the platform's output": "\n".join(team.outputs),
        **{f"log {p.name}": p.read_text(errors="replace") for p in team.folder.glob("*.log")},
    }
    for r in records:
        texts[f"params/tags of run {r.info.run_id}"] = repr({**r.data.params, **r.data.tags})
    assert len(records) >= 4
    # every artifact (run artifacts and logged models) is an object in the stack's bucket
    store = stack_auth.Secrets(team.folder)
    s3 = stack.S3Server(team.folder, port=int(team.state["s3"].rsplit(":", 1)[1]))
    s3.access_key, s3.secret_key = store.s3_keys()
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("promotion/promoted.yaml") for k in keys), keys
    blobs = {k: client.get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in keys}
    leaks = [f"{s} in {w}" for s, v in team.secrets().items() for w, t in texts.items() if v in t]
    leaks += [f"{s} in artifact {k}" for s, v in team.secrets().items() for k, b in blobs.items() if v.encode() in b]
    assert not leaks, leaks


def test_a_wrong_password_is_one_line_at_once(team) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    t0 = time.monotonic()
    err = _one_line(team.ff("rd", "leaderboard", password="not-my-password"))
    assert "refused the credentials of user 'rd' (401 not authenticated)" in err, err
    assert "not-my-password" not in err and time.monotonic() - t0 < 60
    with pytest.MonkeyPatch.context() as mp:  # MLflow's own client, its default retries: 401 is never retried
        for k in [k for k in os.environ if k.startswith("MLFLOW_HTTP_REQUEST")]:
            mp.delenv(k)
        mp.setenv("MLFLOW_TRACKING_USERNAME", "rd")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", "not-my-password")
        t0 = time.monotonic()
        with pytest.raises(MlflowException, match="401"):
            MlflowClient(tracking_uri=team.url).search_experiments()
        assert time.monotonic() - t0 < 5


def test_credentials_never_come_from_a_config_or_a_loose_file(team, tmp_path) -> None:
    err = _one_line(team.ff(None, "--set", "base.tracking_uri=http://rd:pw@127.0.0.1:1", "config"))
    assert "base.tracking_uri holds credentials" in err and ":pw@" not in err, err
    home = tmp_path / "home"
    creds = stack_auth.write_private(home / ".mlflow" / "credentials", "[mlflow]\nmlflow_tracking_username = rd\n")
    creds.chmod(0o644)
    err = _one_line(team.ff(None, "config", home=home))
    assert "mode 644" in err and "chmod 600" in err, err


def test_the_server_stops_mid_stage_and_up_auth_brings_it_back_then_the_rerun_completes(team, tmp_path) -> None:
    """The outage test, with authentication on (last in this module: it stops the team's server). A researcher's
    stage loses the server after its first checkpoint: bounded retries, one line, the checkpoint kept. ``up --auth``
    on the same stack folder starts the server again on its own port (PostgreSQL and S3 still running, the users
    with them); the same command, the same credentials, resumes into the same run and finishes it."""

    from tests.conftest import make_dataset
    from tests.stages.test_cli_pipeline import assert_one_line_error

    make_dataset(tmp_path / "ds", identities=8, per_identity=12, size=32)
    tiny_config(
        tmp_path,
        base={"tracking_uri": team.url, "experiment": "infra-outage", "tracking_retries": 2},
        train={"dataset": str(tmp_path / "ds"), "epochs": 20, "batch_size": 8},
    )
    env = {**_base_env(), **team.creds("rs")}
    cmd = [sys.executable, "-m", "facefoundry", "--params", str(tmp_path / "params.yaml"), "train"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ckpt = tmp_path / "train" / "checkpoint.pt"
        stack.wait_for(ckpt.is_file, "the first checkpoint", 240, proc)
        stack.stop_pid(team.state["mlflow_pid"])  # the server dies while the stage trains
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=240)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    team.outputs.append(err)
    failed = subprocess.CompletedProcess(cmd, proc.returncode, "", err)
    assert_one_line_error(failed, team.url, "unreachable", "run the same command again")
    assert waited < 120, waited  # bounded: MLflow's own defaults would wait for minutes
    assert ckpt.is_file()  # nothing on disk is lost
    state = stack.up(team.folder, ray=False, auth=True)  # what `infra/up.sh --auth` runs
    assert state["mlflow"] == team.url and state["mlflow_pid"] != team.state["mlflow_pid"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    team.outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in (done.stdout + done.stderr)
    assert _get(f"{team.url}/api/2.0/mlflow/experiments/search?max_results=1") == 401  # still authenticated
    with pytest.MonkeyPatch.context() as mp:
        c = _client(team, "admin", mp)
        exp = c.get_experiment_by_name("infra-outage")
        runs = c.search_runs([exp.experiment_id], "tags.`facefoundry.stage` = 'train'")
        assert [r.info.status for r in runs] == ["FINISHED"]  # the same run, reopened and finished
        assert len(c.get_metric_history(runs[0].info.run_id, "train/loss")) == 20
