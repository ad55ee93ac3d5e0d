"""The sections of the stages that use data: ``train`` (the FR model: backbone, margin head, augmentation,
SynFace's domain mixup), ``evaluate``, ``identity`` (encoders and judges), ``quality`` (data metrics, leakage,
gates), ``fuse``, ``report`` and ``promote`` (with its quality gate)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from facefoundry.config.marks import INPUT, OUTPUT, RUNTIME, WIRED
from facefoundry.config.schema_types import JudgeCosine, NonNegFloat, PositiveInt, Prob, RatioGrid, Strict


class BackboneCfg(Strict):
    name: str = "r18"
    embedding_size: PositiveInt = 512
    width: PositiveInt = 64
    layers: list[PositiveInt] | None = None  # only for name: iresnet (custom depth)
    se: bool = False
    dropout: Prob = 0.0


class HeadCfg(Strict):
    """Margin head. For ``combined``: cos(m1*theta + m2) - m3, scaled by s."""

    name: Literal["arcface", "cosface", "sphereface", "combined", "adaface", "softmax"] = "arcface"
    s: Annotated[float, Field(gt=0)] = 64.0
    m1: float | None = None
    m2: float | None = None
    m3: float | None = None
    m: float = 0.4  # AdaFace margin
    h: float = 0.333  # AdaFace norm concentration
    t_alpha: Prob = 0.01  # AdaFace EMA momentum of norm statistics


class PartialFCCfg(Strict):
    """Partial FC (arcface_torch's PartialFC v2): the class centres sharded across the DDP processes, and per step
    the positive classes plus a ``sample_rate`` share of each shard's classes in the softmax (1.0: all of them)."""

    enabled: bool = False
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 1.0


class AugmentCfg(Strict):
    """FR training augmentation beyond flips (``data.transforms.FaceAugment``); all off by default."""

    affine_prob: Prob = 0.0
    rotate: NonNegFloat = 10.0
    scale: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.9, 1.1)
    translate: Annotated[float, Field(ge=0, le=0.5)] = 0.06
    color_prob: Prob = 0.0
    brightness: Prob = 0.3
    contrast: Prob = 0.3
    saturation: Prob = 0.3
    grey_prob: Prob = 0.0
    blur_prob: Prob = 0.0
    blur_sigma: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.5, 1.5)


class DomainMixupCfg(Strict):
    """SynFace domain mixup: per batch X = ψ·X_S + (1 − ψ)·X_R and Y = ψ·Y_S + (1 − ψ)·Y_R, R a second labelled
    dataset whose identities get their own label range after the first's. ψ = 1 everywhere is training on S."""

    dataset: Annotated[str | None, INPUT] = None  # the second domain (any dataset layout); None: off
    psi: RatioGrid = "official"  # the set ψ is drawn from, per batch


class DistillCfg(Strict):
    """Knowledge distillation (``train.objective: distill | both``, after SynthDistill): the student matches the
    teacher's flip-summed unit embedding of every training image (``facefoundry.train.distill``)."""

    loss: Literal["mse", "cosine"] = "mse"  # ‖unit(s) − t‖² (SynthDistill) or 1 − cos(s, t)
    weight: Annotated[float, Field(gt=0)] = 1.0  # the distillation term beside the label loss (objective both)
    # targets minus the dataset's mean teacher vector, renormalised: dlib's raw vectors of different faces sit at
    # cosine ≈ 0.9, and a student matching them raw learns the mean (chance on the real benchmark)
    centred: bool = True
    batch_size: Annotated[PositiveInt, RUNTIME] = 64  # images per teacher batch (computed once per dataset)


class TrainCfg(Strict):
    dataset: Annotated[str, INPUT, WIRED] = "outputs/datasets/render"
    out: Annotated[str, OUTPUT] = "outputs/train/render"
    backbone: BackboneCfg = BackboneCfg()
    head: HeadCfg = HeadCfg()
    partial_fc: PartialFCCfg = PartialFCCfg()  # the head's class centres sharded and sampled (many identities)
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 128
    lr: Annotated[float, Field(gt=0)] = 0.1
    momentum: Prob = 0.9
    weight_decay: NonNegFloat = 5e-4
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: list[PositiveInt] = [10, 16]  # epochs, for the step schedule
    gamma: Prob = 0.1
    warmup_epochs: NonNegFloat = 1.0
    grad_clip: NonNegFloat = 5.0  # 0 disables
    amp: bool = True  # mixed precision: fp16 on CUDA, bf16 on a CPU with native bf16 (AVX512-BF16/AMX), else off
    # NHWC activations and weights in the step (CPU oneDNN and CUDA tensor cores are faster)
    channels_last: Annotated[bool, RUNTIME] = True
    # torch.compile (TorchInductor) of the backbone: fused kernels after a compile of tens of seconds; the same
    # weights up to float noise, and the same checkpoint and model keys (facefoundry.train.speed)
    compile: Annotated[bool, RUNTIME] = False
    num_workers: Annotated[int, Field(ge=0), RUNTIME] = 0
    preload_max_mb: Annotated[int, Field(ge=0), RUNTIME] = 2048  # decode the dataset once into RAM below this size
    flip_prob: Prob = 0.5
    augment: AugmentCfg = AugmentCfg()
    min_images_per_identity: PositiveInt = 2
    # greyscale/palette/RGBA images: convert (counted) or refuse
    non_rgb: Annotated[Literal["convert", "reject"], RUNTIME] = "convert"
    # check every image's hash and colour mode before training (once per dataset version)
    verify_data: Annotated[bool, RUNTIME] = True
    log_every: Annotated[PositiveInt, RUNTIME] = 20
    export_onnx: Annotated[bool, RUNTIME] = True
    threads: Annotated[int, Field(ge=0), RUNTIME] = 0  # torch CPU threads; 0 = torch default
    # who starts the `train --nproc N` processes: torchrun on this node (local) or Ray Train's TorchTrainer on the
    # Ray cluster at RAY_ADDRESS (ray). The same N trains the same way under either (docs/scale.md)
    launcher: Annotated[Literal["local", "ray"], RUNTIME] = "local"
    # DVC metrics file (reproducible numbers only); None: <out>/metrics.json
    metrics: Annotated[str | None, OUTPUT] = None
    # recipe name (registry alias, leaderboard); None: the dataset folder's name
    recipe: Annotated[str | None, RUNTIME] = None
    # MLflow Model Registry name; None: do not register
    registered_model: Annotated[str | None, RUNTIME] = "facefoundry-fr"
    # start from these backbone weights: a model folder, an arcface_torch backbone.pth or an .onnx that kept
    # IResNet names; the head starts fresh (other classes); None: random initialisation
    init: Annotated[str | None, INPUT] = None
    init_arch: str | None = None  # arch of a .pth/.onnx init: r18 | r34 | r50 | r100 | r200; None: read from its keys
    domain_mixup: DomainMixupCfg = DomainMixupCfg()
    # what the student learns from: the identity labels (a margin head), a teacher's embeddings of the same
    # images (knowledge distillation, no labels), or both. No real image enters training under any of them.
    objective: Literal["labels", "distill", "both"] = "labels"
    teacher: str = "dlib"  # distill | both: a registered identity encoder (dlib, sface) or a local .onnx/.dat path
    distill: DistillCfg = DistillCfg()


class EvaluateCfg(Strict):
    # a model folder, an arcface_torch backbone.pth (+ arch) or an insightface .onnx
    model: Annotated[str, INPUT, WIRED] = "outputs/train/render/model"
    arch: str | None = None  # arch of a .pth model: r18 | r34 | r50 | r100 | r200; None: read from its keys
    benchmarks: Annotated[dict[str, str], INPUT] = {"twins": "outputs/benchmarks/twins.bin"}
    out: Annotated[str, OUTPUT] = "outputs/eval"
    batch_size: Annotated[PositiveInt, RUNTIME] = 256
    nfolds: Annotated[int, Field(ge=2)] = 10
    distance: Literal["euclidean", "cosine"] = "euclidean"
    flip: bool = True
    far_targets: list[Annotated[float, Field(gt=0, lt=1)]] = [1e-1, 1e-2, 1e-3, 1e-4]
    resize: bool = True  # benchmark crops of another side are resized to the model's (warned); false: refuse

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _drop_nulls(cls, value: Any) -> Any:
        """``--set evaluate.benchmarks.twins=null`` removes a benchmark (e.g. to score only your own)."""
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


class IdentityCfg(Strict):
    """Identity encoders (``facefoundry.identity``): a registered name (dlib) or a local path."""

    encoder: str = "dlib"  # the identity space generators sample from and train against
    judges: list[str] = ["dlib"]  # encoders that score every validated dataset ([] = none; validate adds the
    # dataset's quality judge when it is not listed)
    judge_max_images: PositiveInt = 2000  # images per dataset a judge embeds (identity-balanced sample)
    batch_size: Annotated[PositiveInt, RUNTIME] = 64


class LeakageCfg(Strict):
    """Generated faces must not be real people: identities whose centre is too close to any image of a
    reference set (benchmarks, the generator's real training photos) are listed, gated and droppable."""

    references: Annotated[
        list[str], INPUT
    ] = []  # verification .bin files or dataset folders whose people must not reappear
    training_photos: bool = True  # also the generator's training photos, when its manifest records them
    # cosine (judge, centred) centre ↔ any reference image; per judge: each matched to dlib's 0.75 on the real
    # benchmark (≈ 1 % of real photos reach it with their best match among other people: docs/results/judges.md)
    threshold: JudgeCosine = {"dlib": 0.75, "sface": 0.45}
    max_reference_images: PositiveInt = 3000  # per reference (a random sample beyond it)
    drop: bool = False  # fuse drops the leaked identities of every source
    drop_margin: Annotated[float, Field(ge=0, le=1)] = 0.05  # fuse drops from threshold − margin: the gate,
    # re-measured on the fused set (centred by its own mean, other images sampled), must not find new ones


class GatesCfg(Strict):
    """Great Expectations thresholds (``validate``): a failing expectation stops the stage. None = not checked."""

    enabled: bool = True
    min_images_per_identity: PositiveInt = 2
    min_identities: PositiveInt = 2
    image_size: bool = True  # every image is base.image_size square
    max_duplicate_images: Annotated[int, Field(ge=0)] | None = 0  # exact (sha256) copies
    max_near_duplicate_images: Annotated[int, Field(ge=0)] | None = None  # perceptual-hash copies
    max_mislabelled_fraction: Prob | None = None  # images nearer another identity's centre than their own
    max_mislabelled_identities: Annotated[int, Field(ge=0)] | None = None  # identities with a split class
    min_intra_mean: float | None = None  # judge cosine (centred) of same-identity pairs ≥ this
    max_inter_mean: float | None = None  # and of different-identity pairs ≤ this
    min_separability: Prob | None = None  # share of identities separable (Vec2Face's measure) ≥ this
    max_leaked_identities: Annotated[int, Field(ge=0)] | None = 0


class QualityCfg(Strict):
    """Data metrics of a dataset (``facefoundry.quality``), computed once per dataset version, and its gates."""

    # the encoder whose space the identity metrics use: auto = the first of judge_order that did not condition or
    # train the dataset's generator (judge ≠ teacher); a name or path = that one (a teacher is warned about)
    judge: str = "auto"
    judge_order: Annotated[list[str], Field(min_length=1)] = ["dlib", "sface"]  # auto's candidates, in order
    centred: bool = True  # identity metrics on unit(v − dataset mean): dlib's different faces sit at cosine ≈ 0.9
    images_per_identity: Annotated[int, Field(ge=2)] = 6  # images of every identity the judge embeds
    # Vec2Face: separable when the max cos to any other centre < this (per judge, as leakage.threshold)
    separability_threshold: JudgeCosine = {"dlib": 0.4, "sface": 0.25}
    mislabel_margin: float = 0.0  # an image is mislabelled when cos(other centre) − cos(own) > this
    mislabel_min_share: Prob = 0.25  # an identity is split when this share of its images is mislabelled
    near_duplicate_bits: Annotated[int, Field(ge=0, le=64)] = 2  # 64-bit DCT hash: Hamming distance ≤ this
    # dataset folder or .bin: Fréchet distance, kernel MMD, density, coverage, JS
    reference: Annotated[str | None, INPUT] = None
    reference_max_images: PositiveInt = 2000
    feature_encoder: str | None = None  # features of those; None: the judge
    nearest_k: PositiveInt = 5  # density and coverage (Naeem et al. 2020)
    js_bins: PositiveInt = 50
    leakage: LeakageCfg = LeakageCfg()
    gates: GatesCfg = GatesCfg()


class FuseSourceCfg(Strict):
    """One dataset of a fusion: all its identities that pass the leakage and overlap checks (neither set), a count,
    or a share of fuse.identities."""

    path: Annotated[str, INPUT]
    identities: PositiveInt | None = None  # take this many identities
    share: Annotated[float, Field(gt=0, le=1)] | None = None  # or this share of fuse.identities


class FuseCfg(Strict):
    """``facefoundry fuse`` (the Dataset Fusion seed): datasets of different generators as one."""

    sources: dict[str, FuseSourceCfg] = {}  # name → source; the name is recorded per image
    identities: PositiveInt | None = None  # total identities (with shares); None: the sum of the counts
    strategy: Literal["uniform", "intra_variance"] = "uniform"  # which identities of a source are taken
    # cross-source centres (judge, centred) ≥ this; per judge, as quality.leakage.threshold
    overlap_threshold: JudgeCosine = {"dlib": 0.65, "sface": 0.39}
    overlap: Literal["drop", "merge", "keep"] = "drop"  # drop the later source's copy, merge labels, or keep
    # images are linked or copied byte for byte: their hashes survive
    out: Annotated[str, OUTPUT] = "outputs/datasets/fused"

    @field_validator("sources", mode="before")
    @classmethod
    def _drop_nulls(cls, value: Any) -> Any:
        """``--set fuse.sources.vec2face=null`` removes a source (e.g. to fuse one dataset alone)."""
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _counts(self) -> FuseCfg:
        for name, src in self.sources.items():
            if src.identities is not None and src.share is not None:
                raise ValueError(f"fuse.sources.{name}: give identities or share, not both")
            if src.share is not None and self.identities is None:
                raise ValueError(f"fuse.sources.{name}: a share needs fuse.identities (the fused total)")
        return self


class ReportCfg(Strict):
    out: Annotated[str, OUTPUT] = "outputs/report"  # the pipeline's leaderboard (stage report; a DVC output)
    # per-recipe metrics the report ranks: <metrics>/<recipe>/{validate,train,eval/metrics}.json
    metrics: Annotated[str, INPUT] = "metrics"
    leaderboard_out: Annotated[str, OUTPUT] = "outputs/leaderboard"  # `facefoundry leaderboard` (every run in MLflow)
    top: Annotated[PositiveInt, RUNTIME] = 20
    benchmark: str | None = None  # rank on this benchmark; None: the mean over benchmarks every row has
    include_adhoc: bool = False  # `facefoundry leaderboard`: also rank runs started outside a pipeline
    # significance level: rows whose difference from the top row is not significant at it are marked as ties
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95  # confidence level of the intervals shown over seeds


class GateCfg(Strict):
    """Quality gate of ``facefoundry promote``: the winning run's data must pass every threshold set here.

    Thresholds read the training run's ``data/*`` metrics (and its dataset's validate run: duplicates,
    judges). All off (None) by default; a threshold whose metric was never measured fails.
    """

    enabled: bool = False  # require the gate (``promote --gate`` / ``--no-gate`` override it)
    min_identities: PositiveInt | None = None  # data/identities ≥ this
    min_images: PositiveInt | None = None  # data/images ≥ this
    max_duplicate_images: Annotated[int, Field(ge=0)] | None = None  # data/duplicate_images ≤ this (validate)
    min_judge_gap: float | None = None  # every judge's intra_mean − inter_mean ≥ this (validate's judge_<name>_*)
    max_tau: Annotated[float, Field(ge=-1, le=1)] | None = None  # generators trained on real photos: the leakage
    # filter must be on (avoid_training) with τ ≤ this (data.<generator>.tau)
    min_accuracy: dict[str, Prob] = {}  # benchmark → minimum accuracy of the run, e.g. {real: 0.6}


class PromoteCfg(Strict):
    """``facefoundry promote``: the best run's FR model becomes ``models:/<name>@champion``."""

    metric: str = "average"  # what "best" means: average | <benchmark> | data/<name> (as `facefoundry leaderboard`)
    registered_model: Annotated[str | None, RUNTIME] = None  # Model Registry name; None: train.registered_model
    # the winning recipe (deep-merge it on params.yaml to reproduce)
    out: Annotated[str, OUTPUT] = "experiments/promoted.yaml"
    card: Annotated[str, OUTPUT] = "experiments/promoted_card.md"  # the dataset card written beside it
    gate: GateCfg = GateCfg()
    # evidence: the challenger replaces the champion only when its mean over at least `min_seeds` FR seeds beats
    # the champion's with p < alpha (one-sided; the paired t-test over shared seeds, else Welch's)
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    min_seeds: Annotated[int, Field(ge=2)] = 3


class ClaimCfg(Strict):
    """A published direction to test: ``recipe`` scores ``expect`` than ``against`` (two-sided test over seeds)."""

    recipe: str
    against: str
    expect: Literal["higher", "lower"] = "higher"
    source: str = ""  # whose claim it is (a paper, a method), printed beside the verdict


class CompareCfg(Strict):
    """``facefoundry compare``: dataset recipes × FR seeds, each pair trained and evaluated as stage runs under one
    MLflow parent; mean ± std, t-intervals and tests against a baseline recipe."""

    # recipe name → a dataset folder, an experiment file (.yaml) deep-merged on the config for that recipe, or a
    # list of at most one dataset folder and experiment files (the dataset under those settings)
    recipes: Annotated[dict[str, str | list[str]], INPUT] = {}
    seeds: list[int] = [1234, 2, 3]  # FR seeds (base.seed) every recipe is trained with
    baseline: str | None = None  # the recipe every other is tested against; None: the first
    out: Annotated[str, OUTPUT] = "outputs/compare"  # <out>/<name>/<recipe>/seed<S>/{train,eval}, summary files
    name: Annotated[str, OUTPUT] = "compare"  # the comparison's folder and parent run name
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05  # significance level of the table's verdicts
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95  # confidence level of the intervals
    # directions to test (e.g. each seed paper's claim): one verdict per claim and benchmark, with its p-value
    claims: list[ClaimCfg] = []
