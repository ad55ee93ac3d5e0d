"""The render generator's descriptor (see :mod:`facefoundry.generators.descriptor`)."""

from facefoundry.generators.descriptor import GeneratorDescriptor

DESCRIPTOR = GeneratorDescriptor(
    name="render",
    description="procedural 3D faces: identities are shape and texture parameters of a parametric head, rendered "
    "with sampled pose, expression, lighting, camera and degradations",
    generate="facefoundry.generators.render.generate:generate_render",
    settings="generate.render",
)
