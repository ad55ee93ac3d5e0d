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
            "tags": {"dataset.dvc_md5": "d1.dir", "data.judge": "sface", "data.judge_teachers": "dlib"},
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
    assert joined[0]["tags"]["data.judge"] == "sface" and joined[0]["tags"]["data.judge_teachers"] == "dlib"
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
        "95% CI",
        "vs top",  # the ranked column's interval and tie marker follow it
        "identities",
        "images",
        "intra (dlib)",
        "inter (dlib)",
        "generator",
        "dataset",
    ]  # then the differing parameters
    assert rows[0][1] == "vec2face" and rows[0][7:11] == ["500", "10000", "—", "—"]
    assert rows[1][7:11] == ["100", "1600", "0.910", "0.520"]
    assert "judge encoder" in board.markdown()
    page = board.html("board <1>")
    assert "<title>board &lt;1&gt;</title>" in page and page.count("<tr>") == 3 and "class=ranked" in page
    assert board.to_json()["rows"][1]["data"]["data/judge_dlib_intra_mean"] == [0.91]


# ---- seeds: one row per recipe with n, mean ± std, the t-interval, and ties with the top row ----


def seeded(recipe: str, values: list[float], seeds: tuple[int, ...] = (1, 2, 3), **kw) -> list[dict]:
    """One run per seed of ``recipe`` (``kw``: what makes it another recipe, e.g. ``lr``)."""
    return [rec(f"{recipe}{s}", recipe, {"twins": v}, seed=s, **kw) for s, v in zip(seeds, values)]


def t_half_width(std: float, n: int, level: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / n**0.5


def test_seeds_of_a_recipe_aggregate_into_one_row_with_mean_std_and_interval():
    runs = seeded("A", [0.80, 0.81, 0.79]) + seeded("B", [0.70, 0.72, 0.74], lr=0.2)
    board = build(runs)
    a, b = board.rows
    assert (a.recipe, b.recipe) == ("A", "B") and a.n == b.n == 3
    assert a.by_seed == pytest.approx({1: 0.80, 2: 0.81, 3: 0.79})  # seed → value stays on the row
    assert a.mean == pytest.approx(0.80) and a.std == pytest.approx(0.01)
    assert b.mean == pytest.approx(0.72) and b.std == pytest.approx(0.02)
    assert a.summary is not None and b.summary is not None
    assert (a.summary.ci_low, a.summary.ci_high) == pytest.approx((0.80 - 0.0248416, 0.80 + 0.0248416), abs=1e-6)
    assert b.summary.half_width == pytest.approx(t_half_width(0.02, 3))
    header, rows = board.table()
    at = header.index("average %")
    assert header[at : at + 3] == ["average %", "95% CI", "vs top"] and header[2] == "n"
    assert rows[0][2] == "3" and rows[0][at : at + 2] == ["80.00 ± 1.00", "77.52 – 82.48"]
    assert rows[1][at : at + 2] == ["72.00 ± 2.00", "67.03 – 76.97"]
    row = board.to_json()["rows"][1]
    # new keys beside the old ones (score_mean, score_std, runs are read as before)
    assert row["score_mean"] == pytest.approx(0.72) and row["score_std"] == pytest.approx(0.02)
    assert row["runs"] == ["B1", "B2", "B3"] and row["n"] == 3
    assert row["seeds"] == pytest.approx({"1": 0.70, "2": 0.72, "3": 0.74})
    assert (row["score_ci_low"], row["score_ci_high"]) == pytest.approx((b.summary.ci_low, b.summary.ci_high))
    assert board.to_json()["level"] == 0.95
    # report.level sets the interval
    narrow = build(runs, level=0.80)
    assert "80% CI" in narrow.table()[0]
    assert narrow.rows[0].summary is not None
    assert narrow.rows[0].summary.half_width == pytest.approx(t_half_width(0.01, 3, 0.80))


def test_a_seed_run_twice_counts_once_its_newest_run():
    runs = [rec("A1new", "A", {"twins": 0.80}, seed=1), *seeded("A", [0.70, 0.82])]  # newest first, as MLflow
    (row,) = build(runs).rows
    assert row.runs == ["A1new", "A1", "A2"] and row.n == 2 and row.by_seed == pytest.approx({1: 0.80, 2: 0.82})
    assert row.mean == pytest.approx(0.81) and build(runs).table()[1][0][2] == "2 (3 runs)"


def test_a_real_difference_is_not_a_tie_and_a_difference_within_the_noise_is():
    runs = (
        seeded("A", [0.80, 0.82, 0.78])  # top: 80 ± 2
        + seeded("B", [0.75, 0.765, 0.74], lr=0.2)  # 5 points below with ~1 point of spread
        + seeded("C", [0.817, 0.777, 0.797], lr=0.3)  # 0.3 points below with 2 points of spread
    )
    board = build(runs, alpha=0.05)
    assert [r.recipe for r in board.rows] == ["A", "C", "B"]
    top, c, b = board.rows
    assert top.marker == "top" and top.tie is None
    assert c.tie is True and c.marker.startswith("≈ p=") and c.vs_top is not None and c.vs_top.p > 0.05
    assert b.tie is False and b.marker.startswith("p=") and b.vs_top is not None and b.vs_top.p < 0.05
    assert c.vs_top.kind == b.vs_top.kind == "paired"  # the same seeds: paired
    header, rows = board.table()
    assert [r[header.index("vs top")] for r in rows] == [top.marker, c.marker, b.marker]
    md = board.markdown()
    assert "≈ marks a row" in md and "α = 0.05" in md and "paired t-test" in md and "Welch" in md
    out = board.to_json()
    assert out["alpha"] == 0.05 and [r["tie"] for r in out["rows"]] == [None, True, False]
    assert out["rows"][1]["vs_top"]["test"] == "paired" and out["rows"][1]["marker"] == c.marker
    # report.alpha decides: at α = 0.001 the 5 points are not shown apart any more
    assert build(runs, alpha=0.001).rows[2].tie is True
    # no seed in common: Welch's test
    other = build(seeded("A", [0.80, 0.82, 0.78]) + seeded("B", [0.75, 0.765, 0.74], seeds=(4, 5, 6), lr=0.2))
    assert other.rows[1].vs_top is not None and other.rows[1].vs_top.kind == "welch" and other.rows[1].tie is False


def test_a_one_run_row_is_untested_and_flagged_when_ranked_above_a_repeated_one():
    runs = [
        *seeded("A", [0.80, 0.81, 0.79]),
        rec("D", "D", {"twins": 0.795}, lr=0.4),  # one run, between A and B
        *seeded("B", [0.70, 0.72, 0.74], lr=0.2),
        rec("E", "E", {"twins": 0.60}, lr=0.5),  # one run below every repeated row
    ]
    board = build(runs)
    # ranked by mean whatever n; the one-run row above a repeated one says so
    assert [r.recipe for r in board.rows] == ["A", "D", "B", "E"]
    _, d, b, e = board.rows
    assert d.n == 1 and d.tie is None and d.vs_top is None and d.marker == "n=1: untested †"
    assert e.marker == "n=1: untested"  # below every repeated row: nothing to flag
    assert b.vs_top is not None and b.tie is False
    header, rows = board.table()
    assert rows[1][header.index("95% CI")] == "—"  # no interval from one run
    assert board.to_json()["rows"][1]["score_ci_low"] is None
    md = board.markdown()
    assert "† ranked on one run above a recipe repeated over seeds (D)" in md
    # a one-run top row: nothing can be tested against it, and it is flagged
    lucky = build([*runs, rec("L", "L", {"twins": 0.83}, lr=0.6)])
    assert [r.marker for r in lucky.rows[:3]] == ["top †", "untested (top n=1)", "n=1: untested †"]
    assert all(r.tie is None for r in lucky.rows) and "The top row is a single run" in lucky.markdown()
    # the report stage's case: one record per recipe (no seeds at all): everything untested, said once
    single = build([rec("x", "render", {"twins": 0.7}), rec("y", "vec2face", {"twins": 0.6})])
    assert [r.marker for r in single.rows] == ["top", "n=1: untested"]
    assert "No recipe was run with more than one FR seed" in single.markdown() and "†" not in single.markdown()


def test_runs_without_a_seed_are_independent_values_tested_by_welch():
    def unseeded(run_id: str, recipe: str, v: float) -> dict:
        r = rec(run_id, recipe, {"twins": v})
        del r["params"]["base.seed"]
        return r

    runs = [unseeded(f"a{i}", "A", v) for i, v in enumerate((0.80, 0.81, 0.79))]
    runs += [unseeded(f"b{i}", "B", v) for i, v in enumerate((0.70, 0.72, 0.74))]
    for r in runs[3:]:
        r["params"]["train.lr"] = "0.2"
    board = build(runs)
    assert [r.n for r in board.rows] == [3, 3] and board.rows[0].by_seed == {}
    assert board.rows[1].vs_top is not None and board.rows[1].vs_top.kind == "welch" and board.rows[1].tie is False


def test_the_leaderboard_picture_shows_the_new_columns_and_shades_the_ties():
    from facefoundry.stages.report import leaderboard_figure

    runs = seeded("A", [0.80, 0.82, 0.78]) + seeded("C", [0.817, 0.777, 0.797], lr=0.3)
    board = build(runs)
    fig = leaderboard_figure(board, "board", 20)
    texts = [t.get_text() for t in fig.texts]
    assert any("α = 0.05" in t for t in texts)
    cells = fig.axes[0].tables[0].get_celld()
    header = [cells[0, j].get_text().get_text() for j in range(len(board.table()[0]))]
    assert {"n", "95% CI", "vs top"} <= set(header)
    assert cells[2, 0].get_facecolor() != cells[1, 0].get_facecolor()  # the tie (row 2) is tinted
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_pareto_front_keeps_the_non_dominated_rows_ties_included_and_counts_rows_without_cost():
    from facefoundry.leaderboard import pareto_front

    rows = [
        {"name": "cheap", "acc": 0.80, "cost": 10.0},
        {"name": "mid", "acc": 0.90, "cost": 100.0},
        {"name": "mid_twin", "acc": 0.90, "cost": 100.0},  # tied with mid on both: neither dominates
        {"name": "mid_dearer", "acc": 0.90, "cost": 150.0},  # same score, costs more: dominated
        {"name": "cheap_worse", "acc": 0.70, "cost": 10.0},  # same cost, scores less: dominated
        {"name": "worse_dearer", "acc": 0.85, "cost": 500.0},  # dominated by mid
        {"name": "best", "acc": 0.95, "cost": 1000.0},
        {"name": "no_cost", "acc": 0.99, "cost": None},  # would top the front: left out, counted
        {"name": "nan_cost", "acc": 0.99, "cost": float("nan")},
        {"name": "no_score", "acc": float("nan"), "cost": 1.0},
    ]
    front = pareto_front(rows, lambda r: r["acc"], lambda r: r["cost"])
    assert [r["name"] for r in front.rows] == ["cheap", "mid", "mid_twin", "best"]  # cheapest first
    assert front.without_cost == 2 and front.without_score == 1
    assert len(front.points) == 7 and front.on_front(rows[1]) and not front.on_front(rows[3])
    empty = pareto_front(rows[7:9], lambda r: r["acc"], lambda r: r["cost"])
    assert empty.rows == [] and empty.without_cost == 2


def cost_rec(run_id: str, recipe: str, acc: float, digest: str, train_s: float | None, seed: int = 1) -> dict:
    r = rec(run_id, recipe, {"twins": acc}, seed=seed)
    r["tags"]["dataset.dvc_md5"] = digest
    if train_s is not None:
        r["metrics"]["cost/train_seconds"] = train_s
    return r


def gen_rec(run_id: str, digest: str, generation: float, generator: float | None) -> dict:
    m = {
        "cost/generation_seconds": generation,
        **({} if generator is None else {"cost/generator_training_seconds": generator}),
    }
    return {"run_id": run_id, "params": {}, "metrics": m, "tags": {"dataset.dvc_md5": digest}}


def test_costs_join_on_the_dataset_version_and_the_board_shows_them():
    from facefoundry.leaderboard import DATASET_SECONDS, TOTAL_SECONDS, join_costs

    train = [
        cost_rec("a1", "render", 0.80, "d-render", 50.0, seed=1),
        cost_rec("a2", "render", 0.82, "d-render", 70.0, seed=2),
        cost_rec("b", "vec2face", 0.90, "d-v2f", 100.0),
        cost_rec("c", "idsync", 0.70, "d-idsync", 100.0),  # its generator's training cost is unknown
        cost_rec("d", "fused", 0.95, "d-unknown", 100.0),  # no generate run wrote its dataset
    ]
    generate = [
        gen_rec("g-new", "d-render", 10.0, 0.0),  # newest first: this one counts
        gen_rec("g-old", "d-render", 99.0, 0.0),
        gen_rec("g-v2f", "d-v2f", 20.0, 1000.0),
        gen_rec("g-id", "d-idsync", 5.0, None),
    ]
    joined = {r["run_id"]: r["metrics"] for r in join_costs(train, generate)}
    assert joined["a1"][DATASET_SECONDS] == 10.0 and joined["a1"][TOTAL_SECONDS] == 60.0
    assert joined["b"][TOTAL_SECONDS] == 1120.0
    assert DATASET_SECONDS not in joined["c"] and TOTAL_SECONDS not in joined["d"]

    board = build(join_costs(train, generate))
    by = {r.recipe: r for r in board.rows}
    assert by["render"].seconds(TOTAL_SECONDS) == pytest.approx(70.0)  # the mean over its two seeds
    assert by["fused"].seconds(TOTAL_SECONDS) is None
    front = board.pareto()
    assert [r.recipe for r in front.rows] == ["render", "vec2face"] and front.without_cost == 2
    header, rows = board.table()
    at = header.index("dataset s")
    assert header[at : at + 3] == ["dataset s", "FR train s", "total s"]
    assert rows[0][header.index("total s")] == "—" and rows[0][1] == "fused"
    assert "Pareto front" in board.markdown() and board.to_json()["pareto"] == ["render", "vec2face"]


def test_a_board_without_costs_has_no_cost_columns_and_no_front():
    board = build([rec("a", "render", {"twins": 0.6}), rec("b", "vec2face", {"twins": 0.7})])
    assert board.cost_columns == [] and "pareto" not in board.to_json() and "Pareto" not in board.markdown()
    assert board.pareto().rows == [] and board.pareto().without_cost == 2


def test_the_pareto_figure_is_written(tmp_path):
    from facefoundry.leaderboard import join_costs
    from facefoundry.plots import save_figure
    from facefoundry.stages.report import pareto_of

    train = [cost_rec("a", "render", 0.8, "d1", 50.0), cost_rec("b", "vec2face", 0.9, "d2", 500.0)]
    train.append(cost_rec("c", "idsync", 0.7, "d2", 900.0))
    board = build(join_costs(train, [gen_rec("g1", "d1", 10.0, 0.0), gen_rec("g2", "d2", 20.0, 100.0)]))
    fig = pareto_of(board, "test")
    assert fig is not None
    save_figure(fig, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert pareto_of(build([rec("a", "render", {"twins": 0.6})]), "test") is None


# ---- training regimes: a distilled model is never ranked beside a label-trained one without saying so ----


def test_a_distilled_recipe_is_its_own_row_with_a_regime_column():
    labels_old = seeded("render", [0.60, 0.62, 0.61])  # runs from before train.objective existed
    labels_new = [
        rec("rn4", "render", {"twins": 0.63}, seed=4, **{"train.objective": "labels", "train.teacher": "dlib"})
    ]
    distilled = [
        rec(f"d{s}", "render", {"twins": v}, seed=s, **{"train.objective": "distill", "train.teacher": "dlib"})
        for s, v in zip((1, 2, 3), (0.70, 0.71, 0.69))
    ]
    other_loss = [
        rec(
            "c1",
            "render",
            {"twins": 0.5},
            **{"train.objective": "distill", "train.teacher": "dlib", "train.distill.loss": "cosine"},
        )
    ]
    board = build(labels_old + labels_new + distilled + other_loss)
    assert [(r.regime, r.n) for r in board.rows] == [("distill:dlib", 3), ("labels", 4), ("distill:dlib", 1)]
    assert board.regime_column
    header, rows = board.table()
    assert header[:3] == ["rank", "recipe", "regime"] and [r[2] for r in rows] == [
        "distill:dlib",
        "labels",
        "distill:dlib",
    ]
    assert not any(p.startswith(("train.objective", "train.teacher")) for p in board.differing)
    assert any("inherits what its teacher learned" in n for n in board.notes())
    assert board.to_json()["rows"][0]["regime"] == "distill:dlib"
    # a tag says it first; a board of label-trained rows has no regime column
    tagged = rec("t1", "x", {"twins": 0.5}, **{"train.objective": "labels"})
    tagged["tags"]["facefoundry.regime"] = "both:sface"
    assert build([tagged]).rows[0].regime == "both:sface"
    assert not build(labels_old + labels_new).regime_column
