"""``compare``'s one HTML page: sample grids side by side, ROC overlays per benchmark, the data metrics and the
significance table, self-contained (images embedded as data URIs, no script, no CDN), so it opens offline
and travels as one MLflow artifact."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from facefoundry.io import atomic_write_text
from facefoundry.stages.compare_table import benchmarks_of, verdict


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _figure_uri(fig: Any) -> str:
    from facefoundry.plots import figure_png

    return _png_uri(figure_png(fig, dpi=90))


def _grid_uri(dataset: str) -> str | None:
    """An identities × images grid of a recipe's dataset (None when it cannot be opened here)."""
    from facefoundry.data.images import encode_image
    from facefoundry.data.sources import open_source
    from facefoundry.errors import FaceFoundryError
    from facefoundry.stages.common import dataset_grid

    try:
        return _png_uri(encode_image(dataset_grid(open_source(dataset), rows=6, cols=6)))
    except (FaceFoundryError, OSError):
        return None


def _roc(folder: Path, bench: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = folder / "eval" / f"roc_{bench}.json"
    if not path.is_file():
        return None
    pts = json.loads(path.read_text())["roc"]
    return np.array([p["fpr"] for p in pts]), np.array([p["tpr"] for p in pts])


def _roc_uri(result: dict[str, Any], pairs: list[Any], bench: str) -> str:
    """Every seed's ROC, one colour per recipe (the spread over seeds is visible as the band of lines)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, recipe in enumerate(result["recipes"]):
        first = True
        for pair in (p for p in pairs if p.recipe == recipe):
            curve = _roc(pair.folder, bench)
            if curve is None:
                continue
            acc = result["recipes"][recipe]["scores"].get(f"{bench}_accuracy", {}).get("mean", float("nan"))
            ax.plot(
                np.maximum(curve[0], 1e-5),
                curve[1],
                color=colours[k % len(colours)],
                alpha=0.7,
                lw=1.2,
                label=f"{recipe} ({acc * 100:.1f} %)" if first else None,
            )
            first = False
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"{bench}: every seed's ROC")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _figure_uri(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _significance(result: dict[str, Any], bench: str, alpha: float) -> str:
    regimes = result.get("regimes") or {}
    shown = set(regimes.values()) - {"labels"} != set()  # a distilled recipe: every row says its regime
    rows = []
    for recipe, r in result["recipes"].items():
        acc = r["scores"].get(f"{bench}_accuracy")
        if acc is None:
            continue
        test = r.get("versus_baseline", {}).get(f"{bench}_accuracy")
        words, p = ("baseline", float("nan")) if test is None else verdict(test, alpha)
        rows.append(
            [
                recipe,
                *([regimes.get(recipe, "labels")] if shown else []),
                str(acc["n"]),
                f"{acc['mean'] * 100:.2f} ± {acc['std'] * 100:.2f}",
                f"{acc['ci_low'] * 100:.2f}–{acc['ci_high'] * 100:.2f}",
                "" if test is None else f"{test['difference'] * 100:+.2f}",
                "" if p != p else f"{p:.3g}",
                words,
            ]
        )
    level = round(result["level"] * 100)
    return _table(
        [
            "recipe",
            *(["regime"] if shown else []),
            "seeds",
            "accuracy % (mean ± std)",
            f"{level} % CI",
            f"Δ vs {result['baseline']}",
            "p",
            f"verdict (α = {alpha:g})",
        ],
        rows,
    )


def _claims(rows: list[dict[str, Any]], alpha: float) -> str:
    return _table(
        [
            "claim",
            "source",
            "expected",
            "benchmark",
            "accuracy % (each)",
            "Δ (points)",
            "p",
            "test",
            f"verdict (α = {alpha:g})",
        ],
        [
            [
                f"{r['recipe']} vs {r['against']}",
                r["source"],
                r["expect"],
                r["benchmark"],
                f"{r['means'][0] * 100:.2f} vs {r['means'][1] * 100:.2f}",
                f"{r['difference'] * 100:+.2f}",
                "" if r["p"] != r["p"] else f"{r['p']:.3g}",
                r["test"],
                r["verdict"],
            ]
            for r in rows
        ],
    )


def _data_metrics(recipes: dict[str, Any], datasets: dict[str, str]) -> str:
    """What each recipe's dataset is: its manifest's images, identities and generator."""
    from facefoundry.data.sources import open_source
    from facefoundry.errors import FaceFoundryError

    rows = []
    for name, value in recipes.items():
        source = value if isinstance(value, str) else " + ".join(value)
        try:
            src = open_source(datasets.get(name, source))
            meta = getattr(getattr(src, "manifest", None), "meta", {}) or {}
            rows.append([name, source, str(len(src)), str(src.num_classes), str(meta.get("generator", ""))])
        except (FaceFoundryError, OSError):
            rows.append([name, source, "", "", "(not readable here: see its train.dataset)"])
    return _table(["recipe", "source", "images", "identities", "generator"], rows)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f4f4f4}.grids{display:flex;flex-wrap:wrap;
gap:1em}.grids figure{margin:0}img{image-rendering:pixelated}"""


def write_page(path: Path, result: dict[str, Any], recipes: dict[str, Any], pairs: list[Any], alpha: float) -> Path:
    """Write the page to ``path`` (atomically) and return it."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>compare</title><style>{STYLE}</style></head><body>",
        f"<h1>Recipes over FR seeds ({', '.join(map(str, next(iter(result['recipes'].values()))['seeds']))})</h1>",
    ]
    for bench in benchmarks_of(result):
        parts += [
            f"<h2>{html.escape(bench)}</h2>",
            _significance(result, bench, alpha),
            f"<img alt='ROC {html.escape(bench)}' src='{_roc_uri(result, pairs, bench)}'>",
        ]
    if result.get("claims"):
        parts += ["<h2>Claims</h2>", _claims(result["claims"], alpha)]
    datasets = result.get("datasets") or {n: v for n, v in recipes.items() if isinstance(v, str)}
    parts += ["<h2>Data</h2>", _data_metrics(recipes, datasets), "<div class='grids'>"]
    for name in recipes:
        uri = _grid_uri(datasets[name]) if name in datasets else None
        if uri is not None:
            parts.append(
                f"<figure><img alt='{html.escape(name)}' width='288' src='{uri}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    parts += ["</div>", "</body></html>"]
    atomic_write_text(path, "\n".join(parts))
    return path
