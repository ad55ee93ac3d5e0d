"""IDSync (Sabadin et al., 2025): identity-conditioned latent diffusion with an auxiliary identity loss.

Arc2Face's conditioning (the prompt "photo of a id person" with the ``id`` token replaced by the
identity vector) on a Stable-Diffusion-style latent diffusion model; IDSync adds λ·identity loss on
the decoded x̂₀. λ = 0 is Arc2Face.

- :mod:`.conditioning` — the prompt, the token replacement, the empty prompt (weightless);
- :mod:`.model` — ``IDSync`` (VAE, UNet, CLIP text encoder, tokenizer, DDPM schedule) and its folder;
- :mod:`.losses` — x̂₀, the CE and cosine identity losses (weightless);
- :mod:`.training` — ``train_idsync``: cached vectors, the local VAE, resumable epochs;
- :mod:`.generate` — PCA identities, DPM-Solver++ with guidance, resumable dataset writing.
"""

from facefoundry.generators.idsync.conditioning import PROMPT, encode_identity, replace_id_token
from facefoundry.generators.idsync.model import MODEL_INDEX, IDSync, load_model_folder, save_model_folder

__all__ = [
    "MODEL_INDEX",
    "PROMPT",
    "IDSync",
    "encode_identity",
    "load_model_folder",
    "replace_id_token",
    "save_model_folder",
    "train_idsync",
]


def __getattr__(name: str):
    if name == "train_idsync":
        from facefoundry.generators.idsync.training import train_idsync

        return train_idsync
    raise AttributeError(name)
