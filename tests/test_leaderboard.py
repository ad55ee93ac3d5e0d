"""Leaderboard rules on plain run records (no MLflow needed)."""

from __future__ import annotations

import pytest

from facefoundry.leaderboard import build, join_data_metrics


def rec(
    run_id: str, recipe: str, metrics: dict, seed: int = 1, lr: float = 0.1, adhoc: bool = False, **params: str
) -> dict:
    p = {
        "base.seed": str(seed),
        "train.lr": str(lr),
        "data.generator": recipe,
        "train.dataset": f"outputs/datasets/{recipe}",
        **params,
    }
    tags = {"facefoundry.recipe": recipe, **({"facefoundry.adhoc": "true"} if adhoc else {})}
    return {"run_id": run_id, "params": p, "metrics": {f"{k}/accuracy": v for k, v in metrics.items()}, "tags": tags}


def test_repeats_group_into_one_row_with_spread():
    board = build(
        [
            rec("a", "render", {"twins": 0.60}, seed=1),
            rec("b", "render", {"twins": 0.64}, seed=2),
            rec("c", "vec2face", {"twins": 0.61}, **{"data.vec2face.tau": "0.4"}),
        ]
    )
    assert [r.recipe for r in board.rows] == ["render", "vec2face"]
    top = board.rows[0]
    assert top.runs == ["a", "b"] and top.mean == pytest.approx(0.62) and top.std == pytest.approx(0.028284, 1e-4)
    header, rows = board.table()
    assert rows[0][header.index("average %")] == "62.00 ± 2.83"
    # seeds never make a column; a generator-only parameter is explained by the generator column
    assert "base.seed" not in board.differing and "data.vec2face.tau" not in board.differing
    assert board.differing[0] == "data.generator"


def test_only_differing_parameters_are_columns():
    board = build([rec("a", "render", {"twins": 0.6}, lr=0.1), rec("b", "render", {"twins": 0.7}, lr=0.05)])
    assert board.differing == ["train.lr"]
    assert board.rows[0].params["train.lr"] == "0.05"


def test_never_averages_over_different_benchmark_sets():
    runs = [rec("a", "render", {"twins": 0.9, "real": 0.5}), rec("b", "vec2face", {"twins": 0.6})]
    board = build(runs)
    assert board.benchmarks == ["twins"] and "twins" in board.basis
    assert board.rows[0].recipe == "render" and board.rows[0].mean == pytest.approx(0.9)
    chosen = build(runs, benchmark="real")
    assert [r.recipe for r in chosen.rows] == ["render"] and chosen.excluded == {"runs not evaluated on real": 1}
    both = build([runs[0], rec("c", "vec2face", {"twins": 0.7, "real": 0.6})])
    assert both.benchmarks == ["real", "twins"] and both.rows[0].mean == pytest.approx(0.7)
    assert "mean accuracy over real, twins" in both.basis


def test_adhoc_and_unevaluated_runs_are_left_out_unless_asked():
    runs = [
        rec("a", "render", {"twins": 0.6}),
        rec("b", "render", {"twins": 0.9}, lr=0.3, adhoc=True),
        {"run_id": "c", "params": {}, "metrics": {"train/accuracy": 1.0}, "tags": {}},
    ]
    board = build(runs)
    assert [r.runs for r in board.rows] == [["a"]] and sum(board.excluded.values()) == 2
    assert "ad-hoc" in board.markdown()
    assert [r.runs for r in build(runs, include_adhoc=True).rows] == [["b"], ["a"]]


def data_rec(run_id: str, recipe: str, accs: dict, data: dict | None = None, experiment: str = "e1", **kw) -> dict:
    r = rec(run_id, recipe, accs, **kw)
    r["metrics"].update({f"data/{k}": v for k, v in (data or {}).items()})
    r["experiment"] = experiment
    return r


def test_recipes_rank_across_experiments():
    runs = [
        data_rec("a", "render", {"twins": 0.70}, experiment="base", seed=1),
        data_rec("b", "render", {"twins": 0.74}, experiment="sweep", seed=2),
        data_rec("c", "vec2face", {"twins": 0.80}, experiment="sweep", **{"data.vec2face.tau": "0.4"}),
    ]
    board = build(runs)
    assert [r.recipe for r in board.rows] == ["vec2face", "render"]
    render = board.rows[1]
    assert render.runs == ["a", "b"] and render.experiments == ["base", "sweep"]  # one recipe, two experiments
    header, rows = board.table()
    assert header[:4] == ["rank", "recipe", "n", "experiment"]
    assert rows[1][:4] == ["2", "render", "2", "base, sweep"]
    assert board.best() == (board.rows[0], "c", 0.80)
    # one experiment: no experiment column
    assert "experiment" not in build(runs[:1]).table()[0]


def test_a_column_per_benchmark_and_the_average_over_the_common_set():
    runs = [
        data_rec("a", "render", {"twins": 0.9, "real": 0.55, "lfw": 0.6}),
        data_rec("b", "vec2face", {"real": 0.65, "twins": 0.7}),
    ]
    board = build(runs)
    assert board.columns == ["twins", "real", "lfw"] and board.average_over == ["real", "twins"]
    header, rows = board.table()
    assert header[3:7] == ["twins %", "real %", "LFW %", "average %"]
    assert rows[0][1] == "render" and rows[0][3:7] == ["90.00", "55.00", "60.00", "72.50"]
    assert rows[1][3:7] == ["70.00", "65.00", "—", "67.50"]  # never averaged over another benchmark set
    assert "**average %**" in board.markdown()  # the ranked column stands out


def test_the_chosen_metric_ranks():
    runs = [
        data_rec("a", "render", {"twins": 0.9, "real": 0.55}, {"identities": 100, "duplicate_images": 3}),
        data_rec("b", "vec2face", {"twins": 0.7, "real": 0.65}, {"identities": 500, "duplicate_images": 0}),
        data_rec("c", "other", {"twins": 0.8, "real": 0.60}, lr=0.3),
    ]
    assert [r.recipe for r in build(runs, metric="average").rows] == ["render", "other", "vec2face"]
    real = build(runs, metric="real/accuracy")  # the metric's key works as well as the benchmark's name
    assert real.metric == "real" and [r.recipe for r in real.rows] == ["vec2face", "other", "render"]
    assert real.ranked_column == "real %" and real.average_over == ["real", "twins"]
    ident = build(runs, metric="data/identities")
    assert [r.recipe for r in ident.rows] == ["vec2face", "render"]
    assert ident.excluded == {"runs without data/identities (validate the dataset)": 1}
    dup = build(runs, metric="data/duplicate_images")  # fewer is better
    assert not dup.higher_is_better and [r.recipe for r in dup.rows] == ["vec2face", "render"]
    assert "lower is better" in dup.basis and dup.best()[1] == "b"
    # report.benchmark still applies when no metric is given; an explicit metric wins
    assert build(runs, benchmark="real").metric == "real" and build(runs, "real", metric="twins").metric == "twins"
    with pytest.raises(ValueError):
        build(runs, metric="data/")


def test_data_columns_come_from_the_datasets_validate_run():
    train = [
        data_rec("a", "render", {"twins": 0.6}, {"identities": 100, "images": 1600}),
        data_rec("b", "vec2face", {"twins": 0.7}, {"identities": 500, "images": 10000}),
    ]
    train[0]["tags"]["dataset.dvc_md5"] = "d1.dir"
    train[1]["tags"]["dataset.dvc_md5"] = "d2.dir"
    validate = [
        {
            "run_id": "v1",
            "params": {},
            "tags": {"dataset.dvc_md5": "d1.dir"},
            "metrics": {
                "data/judge_dlib_intra_mean": 0.91,
                "data/judge_dlib_inter_mean": 0.52,
                "data/identities": 99,
                "images": 5,
            },
        },
        {
            "run_id": "v0",
            "params": {},
            "tags": {"dataset.dvc_md5": "d1.dir"},  # older: ignored
            "metrics": {"data/judge_dlib_intra_mean": 0.1},
        },
    ]
    joined = join_data_metrics(train, validate)
    assert joined[0]["metrics"]["data/judge_dlib_intra_mean"] == 0.91
    assert joined[0]["metrics"]["data/identities"] == 100 and "images" not in joined[0]["metrics"]  # own wins
    assert joined[1] is train[1]  # no validate run of its data
    board = build(joined)
    header, rows = board.table()
    assert board.data_columns == [
        "data/identities",
        "data/images",
        "data/judge_dlib_intra_mean",
        "data/judge_dlib_inter_mean",
    ]
    assert header[3:] == [
        "twins %",
        "average %",
        "identities",
        "images",
        "intra (dlib)",
        "inter (dlib)",
        "generator",
        "dataset",
    ]  # then the differing parameters
    assert rows[0][1] == "vec2face" and rows[0][5:9] == ["500", "10000", "—", "—"]
    assert rows[1][5:9] == ["100", "1600", "0.910", "0.520"]
    assert "judge encoder" in board.markdown()
    page = board.html("board <1>")
    assert "<title>board &lt;1&gt;</title>" in page and page.count("<tr>") == 3 and "class=ranked" in page
    assert board.to_json()["rows"][1]["data"]["data/judge_dlib_intra_mean"] == [0.91]
