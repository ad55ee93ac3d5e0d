"""Judge thresholds per encoder: false-alarm and miss rates of cosine thresholds on the real benchmark's pairs.

    python benchmarks/leakage_threshold.py [--judges dlib sface] [--bin PATH]

``quality.leakage.threshold`` (0.75), ``fuse.overlap_threshold`` (0.65) and ``quality.separability_threshold``
(0.4) were set in dlib's centred cosine space. Another judge needs its own. For each judge this script
embeds every image of the real benchmark (``../shared/data/real_verification/celeba_val.bin``, no flip, as
the quality metrics embed), centres the vectors by the benchmark's own mean (``quality.metrics.centre_space``,
as ``quality.centred`` does for a reference set), and reports, at candidate thresholds, per image pair:

- **false alarms**: the share of different-person pairs with cosine ≥ the threshold;
- **misses**: the share of same-person pairs with cosine < the threshold;

false alarms on the benchmark's 645 protocol different-person pairs and on every different-person pair of its
1,051 distinct photos (identities from ``pairs.csv``: 551,130 pairs, far finer rates); misses on its 645
same-person pairs (every such pair the benchmark has). Also the **best-match** false alarm: the share of
photos whose highest cosine to any photo of *another* person (about 1,050 photos) reaches the threshold —
what the leakage check does with a reference set (one identity against thousands of unrelated images).

The rule that maps a dlib threshold to another judge's (the chosen defaults): the lowest threshold, rounded up
to 0.01, at which the judge's **best-match** false-alarm rate does not exceed dlib's at its threshold. All
three checks act on a maximum over many comparisons (a centre against every reference image, against every
centre of the other sources, against every other centre), and dlib's 0.75 was chosen for about 1 % best-match
false alarms on real faces; the per-pair rate at dlib's 0.75 rests on 10 of 551,130 pairs. The thresholds
matched on all different-person pairs are printed too. The benchmark calibrates data-quality thresholds only,
never FR weights. The false-alarm and miss rates are per image pair (or per photo, best match); the leakage
check compares identity centres (means of about 6 images) with single reference images, so its own rates
differ from these (not measured here).
Writes ``benchmarks/results/leakage_threshold.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks._common; imported in main() so the module has no late imports
BENCH = ROOT.parent / "shared" / "data" / "real_verification" / "celeba_val.bin"
DLIB = {"leakage": 0.75, "overlap": 0.65, "separability": 0.4}  # the settings' dlib values
GRID = [round(0.30 + 0.05 * i, 2) for i in range(14)]  # 0.30 … 0.95
FINE = np.round(np.arange(-0.2, 1.0005, 0.001), 3)


def identities(bin_path: Path, n_pairs: int, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ``.bin`` item: its identity and its photo (path) index, from ``pairs.csv`` beside the ``.bin``."""
    with open(bin_path.with_name("pairs.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n_pairs or any(bool(int(r["issame"])) != bool(s) for r, s in zip(rows, issame)):
        raise SystemExit(f"{bin_path.with_name('pairs.csv')}: does not list the .bin's pairs in order")
    ids = np.array([int(r[k]) for r in rows for k in ("id1", "id2")])
    paths = [r[k] for r in rows for k in ("path1", "path2")]
    index = {p: i for i, p in enumerate(dict.fromkeys(paths))}
    return ids, np.array([index[p] for p in paths])


def embed(name: str, images: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Centred unit vectors of every ``.bin`` item (each distinct photo embedded once)."""
    from facefoundry.identity import load_encoder
    from facefoundry.quality.metrics import centre_space

    enc = load_encoder(name).eval()
    first = np.array([np.flatnonzero(photo == p)[0] for p in range(photo.max() + 1)])
    t0 = time.perf_counter()
    unique = enc.embed(images[first], batch_size=64)
    print(f"{name}: {len(first)} photos embedded in {time.perf_counter() - t0:.0f} s", flush=True)
    return centre_space(unique[photo])[0]  # the .bin's 2,580 items, centred by their mean (as a reference)


def rates(same: np.ndarray, diff: np.ndarray, t: float) -> tuple[float, float]:
    """(false-alarm rate, miss rate) at cosine threshold ``t``."""
    return float((diff >= t).mean()), float((same < t).mean())


def judge_table(name: str, items: np.ndarray, ids: np.ndarray, photo: np.ndarray, issame: np.ndarray) -> dict:
    pair_sim = np.einsum("nd,nd->n", items[0::2], items[1::2])
    p_same, p_diff = pair_sim[issame], pair_sim[~issame]
    first = np.array([np.flatnonzero(photo == p)[0] for p in range(photo.max() + 1)])
    vec, pid = items[first], ids[first]
    sim = vec @ vec.T
    upper = np.triu(np.ones_like(sim, dtype=bool), 1)
    same_id = pid[:, None] == pid[None, :]
    a_same, a_diff = sim[upper & same_id], sim[upper & ~same_id]
    best = np.where(same_id, -np.inf, sim).max(axis=1)  # each photo's best match among other people
    rows = []
    for t in GRID:
        fa, miss = rates(p_same, p_diff, t)
        fa_all, miss_all = rates(a_same, a_diff, t)
        rows.append(
            {
                "threshold": t,
                "protocol_false_alarm": fa,
                "protocol_miss": miss,
                "all_pairs_false_alarm": fa_all,
                "all_pairs_miss": miss_all,
                "best_match_false_alarm": float((best >= t).mean()),
            }
        )
    return {
        "pairs": {"protocol_same": len(p_same), "protocol_different": len(p_diff)},
        "all_pairs": {"same": len(a_same), "different": len(a_diff), "photos": len(first)},
        "different_max": {"protocol": float(p_diff.max()), "all_pairs": float(a_diff.max())},
        "same_median": float(np.median(a_same)),
        "best_match_percentiles": {str(q): float(np.percentile(best, q)) for q in (50, 90, 99)},
        "table": rows,
        "_same": a_same,
        "_diff": a_diff,
        "_best": best,
        "_p_same": p_same,
        "_p_diff": p_diff,
    }


def matched(reference: dict, other: dict, t_ref: float, by: str = "_best") -> dict:
    """``other``'s threshold with the false-alarm rate ``reference`` has at ``t_ref`` (the lowest on a 0.001 grid
    that does not exceed it), on each photo's best match among other people (``by="_best"``) or on all
    different-person photo pairs (``"_diff"``), and both judges' rates there."""
    fa_ref = float((reference[by] >= t_ref).mean())
    fa = np.array([(other[by] >= t).mean() for t in FINE])
    t = float(FINE[np.flatnonzero(fa <= fa_ref)[0]])
    default = math.ceil(round(t * 100, 6)) / 100  # rounded up to 0.01: never more false alarms than the target
    out = {
        "reference_threshold": t_ref,
        "threshold": t,
        "default": default,
        "matched_on": by.strip("_"),
        "false_alarm_target": fa_ref,
    }
    for key, res, thr in (("reference", reference, t_ref), ("judge", other, t), ("judge_default", other, default)):
        out[key] = {
            "all_pairs_false_alarm": float((res["_diff"] >= thr).mean()),
            "all_pairs_miss": float((res["_same"] < thr).mean()),
            "protocol_false_alarm": float((res["_p_diff"] >= thr).mean()),
            "protocol_miss": float((res["_p_same"] < thr).mean()),
            "best_match_false_alarm": float((res["_best"] >= thr).mean()),
        }
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %" if x >= 1e-4 or x == 0 else f"{100 * x:.4f} %"


def _line(ref: str, name: str, setting: str, m: dict) -> None:
    j, r = m["judge_default"], m["reference"]
    print(
        f"  {setting}: {ref} {m['reference_threshold']:.2f} → {name} {m['threshold']:.3f}, default {m['default']:.2f}"
        f" ({ref} at {m['reference_threshold']:.2f} / {name} at {m['default']:.2f}: "
        f"FA best match {_pct(r['best_match_false_alarm'])} / {_pct(j['best_match_false_alarm'])}, "
        f"FA per pair (all) {_pct(r['all_pairs_false_alarm'])} / {_pct(j['all_pairs_false_alarm'])}, "
        f"FA per pair (protocol) {_pct(r['protocol_false_alarm'])} / {_pct(j['protocol_false_alarm'])}, "
        f"miss per pair {_pct(r['all_pairs_miss'])} / {_pct(j['all_pairs_miss'])})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judges", nargs="+", default=["dlib", "sface"], help="encoders; the first is the reference")
    ap.add_argument("--bin", type=Path, default=BENCH, help="verification .bin (pairs.csv beside it)")
    args = ap.parse_args()
    import torch

    from benchmarks._common import save
    from facefoundry.verification.binfile import read_bin

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    pairs = read_bin(args.bin)
    ids, photo = identities(args.bin, len(pairs.issame), pairs.issame)
    digest = hashlib.sha256(args.bin.read_bytes()).hexdigest()[:16]
    res = {name: judge_table(name, embed(name, pairs.images, photo), ids, photo, pairs.issame) for name in args.judges}
    ref = args.judges[0]
    chosen = {
        name: {
            rule: {setting: matched(res[ref], res[name], t, by) for setting, t in DLIB.items()}
            for rule, by in (("best_match", "_best"), ("all_pairs", "_diff"))
        }
        for name in args.judges[1:]
    }
    for name, r in res.items():
        print(
            f"\n{name}: {r['pairs']} protocol pairs; {r['all_pairs']}; best match p50/p90/p99 "
            f"{r['best_match_percentiles']}"
        )
        print("| threshold | FA per pair (protocol) | FA per pair (all) | miss per pair | FA best match |")
        print("|---|---|---|---|---|")
        for row in r["table"]:
            print(
                f"| {row['threshold']:.2f} | {_pct(row['protocol_false_alarm'])} | "
                f"{_pct(row['all_pairs_false_alarm'])} | {_pct(row['all_pairs_miss'])} | "
                f"{_pct(row['best_match_false_alarm'])} |"
            )
    for name, rules in chosen.items():
        for rule, per in rules.items():
            print(f"\n{name} thresholds matched to {ref}'s false-alarm rate ({rule.replace('_', ' ')}):")
            for setting, m in per.items():
                _line(ref, name, setting, m)
    public = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in res.items()}
    save(
        "leakage_threshold", {"benchmark": str(args.bin), "bin_sha256_16": digest, "judges": public, "matched": chosen}
    )


if __name__ == "__main__":
    main()
