"""``compare``'s numbers as tables: the per-recipe summary over seeds, the verdicts against the baseline, the
claims (published directions, each tested), and the markdown tables (one per benchmark, one of claims). Pure: no
I/O."""

from __future__ import annotations

from typing import Any

from facefoundry.stats import summarise, versus


def summary(per_seed: dict[str, dict[int, dict[str, float]]], baseline: str, level: float) -> dict[str, Any]:
    """Per recipe: seeds, every score's summary, and each accuracy tested against ``baseline``."""
    out: dict[str, Any] = {"baseline": baseline, "level": level, "recipes": {}}
    for recipe, by_seed in per_seed.items():
        keys = sorted({k for m in by_seed.values() for k in m})
        row: dict[str, Any] = {"seeds": sorted(by_seed), "per_seed": {str(s): m for s, m in sorted(by_seed.items())}}
        row["scores"] = {
            k: summarise([m[k] for m in by_seed.values() if k in m], level).as_dict()
            for k in keys
            if any(k in m for m in by_seed.values())
        }
        if recipe != baseline:
            row["versus_baseline"] = {
                k: versus(
                    {s: m[k] for s, m in by_seed.items() if k in m},
                    {s: m[k] for s, m in per_seed[baseline].items() if k in m},
                    "two-sided",
                    level,
                ).as_dict()
                for k in keys
                if k.endswith("accuracy") and all(k in m for m in per_seed[baseline].values())
            }
        out["recipes"][recipe] = row
    return out


def _pct(s: dict[str, float]) -> str:
    return f"{s['mean'] * 100:.2f} ± {s['std'] * 100:.2f}"


def benchmarks_of(result: dict[str, Any]) -> list[str]:
    keys = {k for r in result["recipes"].values() for k in r["scores"]}
    return sorted(k.removesuffix("_accuracy") for k in keys if k.endswith("_accuracy") and k != "mean_accuracy")


def _test_of(test: dict[str, Any]) -> dict[str, Any]:
    """The paired test where it is defined (the seeds match and it has a p-value), else Welch's."""
    paired = test["paired"]
    return paired if paired is not None and paired["p"] == paired["p"] else test["welch"]


def verdict(test: dict[str, Any], alpha: float) -> tuple[str, float]:
    """(words, p) for one accuracy's test against the baseline: the paired test where it is defined."""
    t = _test_of(test)
    p = float(t["p"])
    if p != p:
        return "untested (one seed, or no spread)", p
    if p >= alpha:
        return f"no significant difference ({t['test']})", p
    return ("higher" if test["difference"] > 0 else "lower") + f" ({t['test']})", p


def markdown(result: dict[str, Any], alpha: float) -> str:
    """One table per benchmark: mean ± std over seeds, the interval, AUC, TAR@FAR=1e-2, the test."""
    level = round(result["level"] * 100)
    regimes = result.get("regimes") or {}
    shown = set(regimes.values()) - {"labels"} != set()  # a distilled recipe: every row says its regime
    lines: list[str] = []
    if shown:
        lines += [
            "regime: what the FR model learned from: labels (a margin head on the identities), or distill:<teacher> "
            "/ both:<teacher> (a pretrained encoder's embeddings of the same generated images, which carry what "
            "that teacher learned from real faces).",
            "",
        ]
    for bench in benchmarks_of(result):
        lines += [
            f"### {bench}",
            "",
            f"| recipe |{' regime |' if shown else ''} seeds | accuracy % (mean ± std) | {level} % CI | AUC "
            f"| TAR@FAR=1e-2 | Δ vs {result['baseline']} | p | verdict (α = {alpha:g}) |",
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if shown else ""),
        ]
        for recipe, r in result["recipes"].items():
            acc = r["scores"].get(f"{bench}_accuracy")
            if acc is None:
                continue
            auc = r["scores"].get(f"{bench}_auc", {}).get("mean", float("nan"))
            tar = r["scores"].get(f"{bench}_tar_at_far_1e-02", {}).get("mean", float("nan"))
            test = r.get("versus_baseline", {}).get(f"{bench}_accuracy")
            if test is None:
                delta, p_text, words = "baseline", "", ""
            else:
                words, p = verdict(test, alpha)
                delta, p_text = f"{test['difference'] * 100:+.2f}", "" if p != p else f"{p:.3g}"
            cell = f" {regimes.get(recipe, 'labels')} |" if shown else ""
            lines.append(
                f"| {recipe} |{cell} {len(r['seeds'])} | {_pct(acc)} | {acc['ci_low'] * 100:.2f}–{acc['ci_high'] * 100:.2f} "
                f"| {auc:.3f} | {tar:.3f} | {delta} | {p_text} | {words} |"
            )
        lines.append("")
    return "\n".join(lines)


def claims(
    per_seed: dict[str, dict[int, dict[str, float]]], wanted: list[dict[str, str]], alpha: float, level: float
) -> list[dict[str, Any]]:
    """Each claim (``recipe`` scores ``expect`` than ``against``) on every benchmark both ran: the difference of the
    means, the two-sided test (paired over shared seeds, else Welch's) and the verdict: *holds* (p < α in the
    claimed direction), *reversed* (p < α the other way), *not shown* (p ≥ α) or *untested* (no p-value)."""
    out = []
    for claim in wanted:
        mine, theirs = per_seed[claim["recipe"]], per_seed[claim["against"]]
        keys = sorted(
            {k for m in mine.values() for k in m if k.endswith("_accuracy") and k != "mean_accuracy"}
            & {k for m in theirs.values() for k in m}
        )
        for key in keys:
            v = versus(
                {s: m[key] for s, m in mine.items() if key in m},
                {s: m[key] for s, m in theirs.items() if key in m},
                "two-sided",
                level,
            )
            p, diff = v.best.p, v.difference
            sign = 1.0 if claim.get("expect", "higher") == "higher" else -1.0
            if p != p:
                words = "untested (one seed, or no spread)"
            elif p >= alpha:
                words = "not shown"
            else:
                words = "holds" if diff * sign > 0 else "reversed"
            out.append(
                {
                    **{k: claim.get(k, "") for k in ("recipe", "against", "expect", "source")},
                    "benchmark": key.removesuffix("_accuracy"),
                    "means": [v.challenger.mean, v.baseline.mean],
                    "difference": diff,
                    "p": p,
                    "test": v.best.kind,
                    "seeds": [len(mine), len(theirs)],
                    "verdict": words,
                }
            )
    return out


def claims_markdown(rows: list[dict[str, Any]], alpha: float) -> str:
    """The claims as one table: who claims it, what, where, the measured difference, p and the verdict."""
    if not rows:
        return ""
    lines = [
        "### claims",
        "",
        f"| claim (source) | expected | benchmark | accuracy % (mean of each) | Δ (points) | p | test "
        f"| verdict (α = {alpha:g}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        who = f" ({r['source']})" if r["source"] else ""
        p = "" if r["p"] != r["p"] else f"{r['p']:.3g}"
        lines.append(
            f"| {r['recipe']} vs {r['against']}{who} | {r['expect']} | {r['benchmark']} "
            f"| {r['means'][0] * 100:.2f} vs {r['means'][1] * 100:.2f} | {r['difference'] * 100:+.2f} "
            f"| {p} | {r['test']} | {r['verdict']} |"
        )
    return "\n".join([*lines, ""])
