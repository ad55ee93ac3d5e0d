"""The quality gate: the thresholds (``promote.gate``) a winning run's data and accuracy must meet.

Every threshold the run fails is reported as one phrase; a threshold on something never measured fails,
so no promotion passes on missing evidence. Pure functions of the run's metrics and params.
"""

from __future__ import annotations

import math
import re

from facefoundry.config import GateCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.leaderboard import ACC
from facefoundry.promote.provenance import FUSION

_JUDGE = re.compile(r"^data/judge_(.+)_(intra|inter)_mean$")


def learns_from_photos(generator: str) -> bool:
    """Whether a generator's training data may be real photos (its descriptor says), so the leakage gate
    applies; an unknown or unrecorded generator counts as one (no gate passes on missing evidence)."""
    from facefoundry.generators.table import descriptor

    if generator == FUSION:
        return False
    try:
        return descriptor(generator).learns_from_photos
    except FaceFoundryError:
        return True


def gate_thresholds(gate: GateCfg) -> list[str]:
    """The thresholds a gate sets (names of its fields)."""
    return [k for k, v in gate.model_dump().items() if k != "enabled" and v not in (None, {})]


def gate_failures(gate: GateCfg, metrics: dict[str, float], params: dict[str, str]) -> list[str]:
    """Every threshold of ``gate`` the run fails, one phrase each (empty: it passes).

    ``metrics``: the training run's metrics with its dataset's validate metrics (``data/*``);
    ``params``: its params (``data.<generator>.tau`` / ``avoid_training`` for the leakage check).
    A threshold on something never measured fails: a gate cannot pass on missing evidence.
    """
    fails: list[str] = []

    def check(key: str, limit: float, at_least: bool, what: str) -> None:
        v = metrics.get(key)
        if v is None or not math.isfinite(v):
            fails.append(f"{key} not measured (promote.gate.{what}; run validate on the dataset)")
        elif (v < limit) if at_least else (v > limit):
            fails.append(f"{key} = {v:g} {'<' if at_least else '>'} {limit:g} (promote.gate.{what})")

    if gate.min_identities is not None:
        check("data/identities", gate.min_identities, True, "min_identities")
    if gate.min_images is not None:
        check("data/images", gate.min_images, True, "min_images")
    if gate.max_duplicate_images is not None:
        check("data/duplicate_images", gate.max_duplicate_images, False, "max_duplicate_images")
    if gate.min_judge_gap is not None:
        judges = sorted({m.group(1) for k in metrics if (m := _JUDGE.match(k))})
        if not judges:
            fails.append("no judge metrics (promote.gate.min_judge_gap; validate with identity.judges)")
        for j in judges:
            intra, inter = metrics.get(f"data/judge_{j}_intra_mean"), metrics.get(f"data/judge_{j}_inter_mean")
            if intra is None or inter is None:
                fails.append(f"judge {j}: intra or inter mean not measured (promote.gate.min_judge_gap)")
            elif intra - inter < gate.min_judge_gap:
                fails.append(
                    f"judge {j} intra − inter = {intra - inter:.3f} < {gate.min_judge_gap:g} "
                    "(promote.gate.min_judge_gap)"
                )
    if gate.max_tau is not None:
        gen = params.get("data.generator", "")
        tau = params.get(f"data.{gen}.tau")
        if tau is None:
            if learns_from_photos(gen):
                fails.append(f"data.{gen or '<generator>'}.tau not recorded (promote.gate.max_tau)")
        else:
            if params.get(f"data.{gen}.avoid_training") == "False":
                fails.append(
                    f"data.{gen}.avoid_training is off: identities were not kept away from the "
                    "training photos (promote.gate.max_tau)"
                )
            if float(tau) > gate.max_tau:
                fails.append(f"data.{gen}.tau = {float(tau):g} > {gate.max_tau:g} (promote.gate.max_tau)")
    for bench, limit in gate.min_accuracy.items():
        check(f"{bench}{ACC}", limit, True, f"min_accuracy.{bench}")
    return fails
