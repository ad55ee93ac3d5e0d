"""IDSync's descriptor (see :mod:`facefoundry.generators.descriptor`)."""

from facefoundry.generators.descriptor import GeneratorDescriptor

DESCRIPTOR = GeneratorDescriptor(
    name="idsync",
    description="IDSync: identity-conditioned latent diffusion (Arc2Face's conditioning) trained with a λ-weighted "
    "identity loss; new identities are sampled in the identity encoder's PCA space",
    generate="facefoundry.generators.idsync.generate:generate_idsync",
    settings="generate.idsync",
    train="facefoundry.generators.idsync.training:train_idsync",
    train_section="idsync",
    model_setting="generate.idsync.model",
    model_index="idsync_model.json",
    train_when_missing=True,
    learns_from_photos=True,
    identity_encoder=True,
    describe="facefoundry.generators.idsync.descriptor:describe",
)


def describe(cfg) -> list[str]:  # a Config
    """The training run's name parts: the identity loss and its weight λ (0: Arc2Face)."""
    c = cfg.idsync
    return [f"λ {c.identity_weight:g} {c.identity_loss}" if c.identity_weight else "λ 0 (Arc2Face)"]
