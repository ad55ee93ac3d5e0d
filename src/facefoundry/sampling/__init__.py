"""Vec2Face identity sampling: PCA + τ filter, per-image σ variation, and AttrOP."""

from facefoundry.sampling.attrop import AttrOPResult, AttrOPTargets, attrop
from facefoundry.sampling.pca import IdentityPCA, sample_identities, tau_filter
from facefoundry.sampling.perturb import SIGMA_WEIGHTS, SIGMAS, PerturbResult, perturb, sample_sigmas

__all__ = [
    "SIGMAS",
    "SIGMA_WEIGHTS",
    "AttrOPResult",
    "AttrOPTargets",
    "IdentityPCA",
    "PerturbResult",
    "attrop",
    "perturb",
    "sample_identities",
    "sample_sigmas",
    "tau_filter",
]
