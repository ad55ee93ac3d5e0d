"""Vec2Face's descriptor (see :mod:`facefoundry.generators.descriptor`)."""

from facefoundry.generators.descriptor import GeneratorDescriptor

DESCRIPTOR = GeneratorDescriptor(
    name="vec2face",
    description="Vec2Face: a feature-masked autoencoder decodes sampled identity vectors into faces; new identities "
    "are drawn in the identity encoder's space and kept ≤ τ from each other and from the generator's "
    "training photos",
    generate="facefoundry.generators.vec2face.generate:generate_vec2face",
    settings="generate.vec2face",
    train="facefoundry.generators.vec2face.training:train_vec2face",
    train_section="vec2face",
    model_setting="generate.vec2face.model",
    model_index="vec2face_model.json",
    learns_from_photos=True,
    leakage_filter=True,
    identity_encoder=True,
    describe="facefoundry.generators.vec2face.descriptor:describe",
    reconstructions="facefoundry.generators.vec2face.artifacts:reconstruction_grid",
)


def describe(cfg) -> list[str]:  # a Config
    """The training run's name parts: the transformer's width and depth."""
    return [f"w{cfg.vec2face.width} d{cfg.vec2face.depth}"]
