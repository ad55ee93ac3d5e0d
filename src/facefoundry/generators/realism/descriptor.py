"""The realism translator's descriptor: its datasets are renders translated towards a photo domain, made by
``facefoundry realism`` (see :mod:`facefoundry.generators.descriptor`)."""

from facefoundry.generators.descriptor import GeneratorDescriptor

DESCRIPTOR = GeneratorDescriptor(
    name="realism",
    description="rendered faces translated towards a target photo domain (unpaired image translation)",
    made_by="realism",
    learns_from_photos=True,
    provenance="facefoundry.generators.realism.descriptor:provenance",
)


def provenance(params: dict[str, str], recipe: dict) -> dict:
    """The translator learned the look of ``realism.target_dir``; the faces are renders."""
    real = recipe.get("realism") or {}
    target = real.get("target_dir")
    notes = (
        [
            f"The translator learned the photographic look from `{target}` (unpaired: images only, no "
            f"identities); the faces are the renders of `{real.get('source', 'the render dataset')}`."
        ]
        if target
        else []
    )
    return {"trained_on": target, "notes": notes}
