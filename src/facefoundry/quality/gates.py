"""Great Expectations quality gates: a dataset's manifest and metrics against ``quality.gates`` thresholds.

Two expectation suites run in a fresh GX File Data Context under ``<out_dir>/gx``:

* ``manifest``: one row per image (``manifest_frame``): required columns present, sha256 unique when no
  exact copies are allowed, labels ≥ 0, every identity with enough images, every image the expected size;
* ``metrics``: one row of the dataset's metric values (identity count, duplicates, mislabelling, identity
  similarity, separability, leaked identities), each against its threshold.

A threshold that is set but whose metric was not measured fails here, in Python, before GX runs. The
full validation results go to ``<out_dir>/gx_results.json`` and, with ``data_docs``, a Data Docs HTML site
is built under ``<out_dir>/gx``. GX never phones home: analytics are off before it is imported.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # after the analytics switch above
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig

from facefoundry.config import GatesCfg
from facefoundry.data.manifest import Manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, ensure_writable

if TYPE_CHECKING:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

FRAME_COLUMNS = ("path", "label", "identity", "source", "width", "height", "sha256")
GX_DIR = "gx"
RESULTS_JSON = "gx_results.json"
DATASOURCE = "facefoundry"
DATA_DOCS_SITE = "local_site"
EXAMPLES = 3  # example rows (their ``path``) named per failed row-level expectation
_STAT_KEYS = ("evaluated_expectations", "successful_expectations", "unsuccessful_expectations")

# metric name, the GatesCfg field that bounds it, and which bound that field is
METRIC_GATES: tuple[tuple[str, str, str], ...] = (
    ("identities", "min_identities", "min"),
    ("duplicate_images", "max_duplicate_images", "max"),
    ("near_duplicate_images", "max_near_duplicate_images", "max"),
    ("mislabelled_fraction", "max_mislabelled_fraction", "max"),
    ("mislabelled_identities", "max_mislabelled_identities", "max"),
    ("intra_mean", "min_intra_mean", "min"),
    ("inter_mean", "max_inter_mean", "max"),
    ("separability", "min_separability", "min"),
    ("leaked_identities", "max_leaked_identities", "max"),
)


@dataclass
class GateResult:
    """The outcome of the quality gates: pass/fail, one line per failed expectation, and where GX wrote."""

    success: bool
    failures: list[str]
    statistics: dict
    result_json: Path
    docs_dir: Path | None
    enabled: bool = True
    expectations: list[dict] = field(default_factory=list)  # one deterministic record per expectation run

    def to_json(self) -> dict:
        """What a person reads (``gates.json``): no run ids, ids or times, so the same data gives the same bytes."""
        return {
            "enabled": self.enabled,
            "success": self.success,
            "statistics": self.statistics,
            "failures": self.failures,
            "expectations": self.expectations,
        }

    def summary(self) -> str:
        """One line for logs and error messages."""
        if not self.enabled:
            return "quality gates: disabled (quality.gates.enabled is false)"
        total = int(self.statistics.get("evaluated_expectations", 0))
        if not self.failures:
            return f"quality gates: all {total} expectations passed"
        return f"quality gates: {len(self.failures)} of {total} expectations failed: {'; '.join(self.failures)}"


# ---------------------------------------------------------------------------------------------- frames


def manifest_frame(manifest: Manifest) -> pd.DataFrame:
    """The manifest as a DataFrame (``FRAME_COLUMNS``) plus ``identity_images``: the image count of each row's label."""
    frame = pd.DataFrame({c: getattr(manifest, c) for c in FRAME_COLUMNS})
    if manifest.has_soft_labels:  # SynFace identity mixup: partner label and own weight per row
        frame["mix_label"], frame["mix_weight"] = manifest.mix_label, manifest.mix_weight
    if frame.empty:  # no values to infer types from
        frame = frame.astype({"label": "int64", "width": "int64", "height": "int64"})
    counts = frame.groupby("label", sort=False, dropna=False)["label"].transform("size")
    frame["identity_images"] = counts.astype("int64")
    return frame


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row: every scalar numeric metric as a column (lists, dicts and strings are left out)."""
    row = {k: v for k, v in metrics.items() if _is_number(v)}
    return pd.DataFrame([row], index=[0]) if row else pd.DataFrame(index=[0])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or (
        hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0 and getattr(v.dtype, "kind", "") in "biuf"
    )


# ---------------------------------------------------------------------------------------------- suites


def _between(
    column: str, gate: str | None, lo: float | None = None, hi: float | None = None
) -> gx.expectations.Expectation:
    """``column`` values within [lo, hi]; ``gate`` (the setting behind it) is named in failure lines."""
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=column, min_value=lo, max_value=hi, meta={"gate": gate} if gate else None
    )


def manifest_suite(gates: GatesCfg, image_size: int, soft_labels: bool = False) -> gx.ExpectationSuite:
    """The row-level expectations on ``manifest_frame``; suite name ``manifest``. ``soft_labels``: the frame
    has identity mixup's columns (partner ≥ -1, weight within [0, 1])."""
    exps: list[gx.expectations.Expectation] = [gx.expectations.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c) for c in ("path", "label", "identity", "sha256")]
    if gates.max_duplicate_images == 0:
        exps.append(
            gx.expectations.ExpectColumnValuesToBeUnique(
                column="sha256", meta={"gate": "quality.gates.max_duplicate_images = 0"}
            )
        )
    exps.append(_between("label", None, lo=0))
    exps.append(_between("identity_images", "quality.gates.min_images_per_identity", lo=gates.min_images_per_identity))
    if gates.image_size:
        gate = f"quality.gates.image_size: base.image_size = {image_size}"
        exps += [_between(c, gate, lo=image_size, hi=image_size) for c in ("width", "height")]
    if soft_labels:
        exps += [
            _between("mix_label", "soft labels: partner -1 or a label", lo=-1),
            _between("mix_weight", "soft labels: weight within [0, 1]", lo=0, hi=1),
        ]
    return gx.ExpectationSuite(name="manifest", expectations=exps)


def metric_thresholds(gates: GatesCfg) -> list[tuple[str, str, float | None, float | None]]:
    """(metric, gates field, min, max) for every threshold that is set."""
    out = []
    for metric, fld, kind in METRIC_GATES:
        value = getattr(gates, fld)
        if value is not None:
            out.append((metric, fld, value if kind == "min" else None, value if kind == "max" else None))
    return out


def metrics_suite(gates: GatesCfg, measured: Collection[str] | None = None) -> gx.ExpectationSuite:
    """Each set threshold as a bound on its metric's column; suite name ``metrics``.

    ``measured``: only the metrics present (the rest fail before GX, see ``unmeasured``); None = all.
    """
    exps = [
        _between(metric, f"quality.gates.{fld}", lo, hi)
        for metric, fld, lo, hi in metric_thresholds(gates)
        if measured is None or metric in measured
    ]
    return gx.ExpectationSuite(name="metrics", expectations=exps)


def unmeasured(metrics: dict[str, Any], gates: GatesCfg) -> tuple[list[str], list[str]]:
    """(metrics the gates can check, a failure line per set threshold whose metric is missing or not a number)."""
    measured, lines = [], []
    for metric, fld, _, _ in metric_thresholds(gates):
        value = metrics.get(metric)
        if value is None:
            lines.append(f"metrics: {metric} was not measured (needed by quality.gates.{fld})")
        elif not _is_number(value):
            raise FaceFoundryError(f"metrics: {metric} must be a number, found {type(value).__name__} ({value!r})")
        elif not math.isfinite(float(value)):
            lines.append(f"metrics: {metric} = {float(value)} is not a finite number (needed by quality.gates.{fld})")
        else:
            measured.append(metric)
    return measured, lines


# ---------------------------------------------------------------------------------------------- running


def _fresh_context(out_dir: Path) -> Any:
    """A new GX File Data Context at ``out_dir/gx`` (any previous one removed), progress bars off."""
    shutil.rmtree(out_dir / GX_DIR, ignore_errors=True)
    context = gx.get_context(mode="file", project_root_dir=out_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.variables.save()
    return context


def _result_format(frame: pd.DataFrame) -> dict:
    """SUMMARY (counts + the first unexpected values/rows); rows are named by ``path`` where the frame has it."""
    fmt: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": 20,
        "return_unexpected_index_query": False,
    }
    if "path" in frame.columns:
        fmt["unexpected_index_column_names"] = ["path"]
    return fmt


def _validate(
    context: Any, suite: gx.ExpectationSuite, frame: pd.DataFrame, data_docs: bool
) -> tuple[gx.ExpectationSuite, ExpectationSuiteValidationResult]:
    """Run one suite on one DataFrame: through a Checkpoint that updates Data Docs, or its ValidationDefinition.

    One Checkpoint per suite: a Checkpoint passes the same batch parameters (the DataFrame) to all its
    validation definitions, and the two suites validate different frames. Returns the suite as stored
    (its expectations now have ids) and the result.
    """
    name = suite.name
    asset = context.data_sources.get(DATASOURCE).add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(suite)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    params = {"dataframe": frame}
    if not data_docs:
        return suite, vd.run(batch_parameters=params, result_format=_result_format(frame))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_gates",
            validation_definitions=[vd],
            result_format=_result_format(frame),
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE])],
        )
    )
    run = checkpoint.run(batch_parameters=params)
    return suite, next(iter(run.run_results.values()))


def _docs_dir(context: Any) -> Path | None:
    site = (context.variables.data_docs_sites or {}).get(DATA_DOCS_SITE, {})
    base = site.get("store_backend", {}).get("base_directory")
    if not base:
        return None
    path = Path(context.root_directory) / base
    return path if (path / "index.html").is_file() else None


def run_gates(
    frame: pd.DataFrame,
    metrics: dict[str, float],
    gates: GatesCfg,
    image_size: int,
    out_dir: str | Path,
    data_docs: bool = True,
) -> GateResult:
    """Validate ``frame`` (``manifest_frame``) and ``metrics`` against ``gates``; write the results under ``out_dir``.

    ``out_dir/gx`` (the GX project, with the Data Docs site when ``data_docs``) is recreated on each call;
    ``out_dir/gx_results.json`` holds both suites' full validation results.
    """
    out_dir = ensure_writable(out_dir)
    result_json = out_dir / RESULTS_JSON
    if not gates.enabled:
        return _disabled(out_dir, result_json)
    _check_frame(frame, gates)
    measured, not_measured = unmeasured(metrics, gates)
    context = _fresh_context(out_dir)
    context.data_sources.add_pandas(DATASOURCE)
    runs = {
        "manifest": _validate(
            context, manifest_suite(gates, image_size, "mix_weight" in frame.columns), frame, data_docs
        ),
        "metrics": _validate(context, metrics_suite(gates, measured), metrics_frame(metrics), data_docs),
    }
    failures = not_measured + [line for name, (suite, r) in runs.items() for line in failure_lines(name, r, suite)]
    stats = _statistics([r for _, r in runs.values()], len(not_measured))
    result = GateResult(
        success=not failures,
        failures=failures,
        statistics=stats,
        result_json=result_json,
        docs_dir=_docs_dir(context) if data_docs else None,
        expectations=[e for name, (suite, r) in runs.items() for e in expectation_records(name, r, suite)],
    )
    atomic_write_json(
        result_json,
        {
            "success": result.success,
            "statistics": stats,
            "failures": failures,
            "not_measured": not_measured,
            "suites": {name: r.to_json_dict() for name, (_, r) in runs.items()},
        },
    )
    return result


def _check_frame(frame: pd.DataFrame, gates: GatesCfg) -> None:
    needed = ["path", "label", "identity", "sha256", "identity_images"]
    needed += ["width", "height"] if gates.image_size else []
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise FaceFoundryError(f"quality gates: the manifest frame lacks columns {missing} (see manifest_frame)")


def _disabled(out_dir: Path, result_json: Path) -> GateResult:
    """Gates off: success with no expectations; nothing of GX runs, and no earlier GX folder is left to mislead."""
    shutil.rmtree(out_dir / GX_DIR, ignore_errors=True)
    stats = dict.fromkeys(_STAT_KEYS, 0)
    atomic_write_json(
        result_json, {"enabled": False, "success": True, "statistics": stats, "failures": [], "suites": {}}
    )
    return GateResult(
        success=True, failures=[], statistics=stats, result_json=result_json, docs_dir=None, enabled=False
    )


def _statistics(results: Iterable[ExpectationSuiteValidationResult], not_measured: int) -> dict:
    stats = dict.fromkeys(_STAT_KEYS, 0)
    for r in results:
        for k in _STAT_KEYS:
            stats[k] += int(r.statistics.get(k) or 0)
    stats["evaluated_expectations"] += not_measured
    stats["unsuccessful_expectations"] += not_measured
    return stats


# ---------------------------------------------------------------------------------------------- failure lines


def failure_lines(
    suite: str, result: ExpectationSuiteValidationResult, order: gx.ExpectationSuite | None = None
) -> list[str]:
    """One human-readable line per failed expectation of one suite's result.

    In the order of the expectations of ``order`` (the suite that ran) when given: GX lists the results of
    expectations that raised first.
    """
    failed = [r for r in result.results if not r.success]
    if order is not None:
        rank = {e.id: i for i, e in enumerate(order.expectations)}
        failed.sort(key=lambda r: rank.get(_config(r).id, len(rank)))
    return [f"{suite}: {_describe(suite, r)}" for r in failed]


def expectation_records(suite: str, result: ExpectationSuiteValidationResult, order: gx.ExpectationSuite) -> list[dict]:
    """Every expectation of one suite's result, in the suite's order: what it checked, with which bounds,
    and whether it held (the failure line when not). Deterministic: no GX ids, run names or times."""
    rank = {e.id: i for i, e in enumerate(order.expectations)}
    out = []
    for r in sorted(result.results, key=lambda r: rank.get(_config(r).id, len(rank))):
        cfg = _config(r)
        kw = {k: v for k, v in dict(cfg.kwargs).items() if k not in ("batch_id", "result_format")}
        out.append(
            {
                "suite": suite,
                "expectation": cfg.type,
                "kwargs": kw,
                "gate": (cfg.meta or {}).get("gate"),
                "success": bool(r.success),
                "failure": None if r.success else f"{suite}: {_describe(suite, r)}",
            }
        )
    return out


def _config(r: ExpectationValidationResult) -> ExpectationConfiguration:
    """The expectation a result is for: GX sets it on every result of a suite's validation."""
    cfg = r.expectation_config
    assert cfg is not None, "a suite's validation result names its expectation"
    return cfg


def _describe(suite: str, r: ExpectationValidationResult) -> str:
    cfg = _config(r)
    kw, res = dict(cfg.kwargs), dict(r.result or {})
    gate = (cfg.meta or {}).get("gate")
    tail = f" ({gate})" if gate else ""
    error = _exception_message(r.exception_info)
    col = kw.get("column")
    if error:
        return f"{cfg.type}{f' on {col}' if col else ''} could not run: {error}{tail}"
    if cfg.type == "expect_table_row_count_to_be_between":
        return f"row count = {res.get('observed_value')}, expected {_bound(kw)}{tail}"
    if suite == "metrics" and cfg.type == "expect_column_values_to_be_between":
        observed = (res.get("partial_unexpected_list") or [None])[0]
        return f"{col} = {_fmt(observed)}, expected {_bound(kw)}{tail}"
    plain = {
        "expect_column_values_to_be_unique": f"{col} values are not unique",
        "expect_column_values_to_not_be_null": f"{col} has missing values",
        "expect_column_values_to_be_between": f"{col} values must be {_bound(kw)}",
    }
    what = plain.get(cfg.type, f"{cfg.type}({kw})")
    return f"{what}: {_row_facts(res)}{tail}"


def _row_facts(res: dict) -> str:
    """``3 rows (observed 31, 33; e.g. a.png, b.png, …)`` from a SUMMARY result."""
    n = res.get("unexpected_count")
    facts = []
    values = [c.get("value") for c in res.get("partial_unexpected_counts") or [] if "value" in c]
    if values and not isinstance(values[0], str):  # numbers say what was wrong; hashes and names repeat the path
        more = ", …" if len(values) > EXAMPLES else ""
        facts.append(f"observed {', '.join(_fmt(v) for v in values[:EXAMPLES])}{more}")
    paths = [row.get("path") for row in res.get("partial_unexpected_index_list") or [] if isinstance(row, dict)]
    if paths:
        more = ", …" if (n or len(paths)) > EXAMPLES else ""
        facts.append(f"e.g. {', '.join(str(p) for p in paths[:EXAMPLES])}{more}")
    count = "?" if n is None else f"{n} row{'s' if n != 1 else ''}"
    return f"{count} ({'; '.join(facts)})" if facts else count


def _bound(kw: dict) -> str:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None and hi is not None:
        return _fmt(lo) if lo == hi else f"in [{_fmt(lo)}, {_fmt(hi)}]"
    return f"≥ {_fmt(lo)}" if lo is not None else f"≤ {_fmt(hi)}"


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _exception_message(info: Any) -> str | None:
    """GX's exception_info is either one {raised_exception, exception_message} or a dict of them per metric."""
    if not isinstance(info, dict) or not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for e in entries:
        if e.get("raised_exception"):
            return str(e.get("exception_message") or "an error").splitlines()[0]
    return None
