"""IDSync / Arc2Face conditioning: the fixed prompt "photo of a id person" with the ``id`` token replaced.

The token embedding at the ``id`` position is replaced by the ℓ2-normalised identity vector,
zero-padded to the text encoder's width; the position embeddings are then added and the whole
CLIP text encoder runs, as in the official ``project_face_embs``. The replacement happens in a
forward hook on the token-embedding table, so it works with any ``CLIPTextModel`` (transformers 4
and 5 lay the model out differently) and the table itself stays frozen.

No tokenizer can be downloaded here: a toy model gets a minimal CLIP BPE tokenizer whose vocabulary
is exactly the prompt's words (``toy_tokenizer``); a real Arc2Face/Stable-Diffusion folder brings its own.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PROMPT = "photo of a id person"
ID_WORD = "id"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def toy_tokenizer(max_length: int = 8):
    """A CLIP BPE tokenizer that knows only the prompt's words (and the empty prompt)."""
    from transformers import CLIPTokenizer

    words = PROMPT.split()
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        vocab.setdefault(tok, len(vocab))

    add("!")
    for ch in sorted(set("".join(words))):
        add(ch)
        add(ch + "</w>")
    merges: list[str] = []
    for w in words:  # merge left to right until the word is one token
        toks = [*list(w[:-1]), w[-1] + "</w>"]
        while len(toks) > 1:
            merges.append(f"{toks[0]} {toks[1]}")
            toks = [toks[0] + toks[1], *toks[2:]]
            add(toks[0])
    add(BOS)
    add(EOS)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
        return CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"), model_max_length=max_length)


def prompt_ids(tokenizer, prompt: str = PROMPT) -> torch.Tensor:
    """``[1, L]`` token ids of ``prompt``, padded to the tokenizer's maximum length."""
    return tokenizer(
        prompt, padding="max_length", truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids


def id_token(tokenizer) -> int:
    ids = tokenizer.encode(ID_WORD, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"the tokenizer splits {ID_WORD!r} into {len(ids)} tokens; IDSync needs exactly one")
    return int(ids[0])


def replace_id_token(
    token_embeds: torch.Tensor, input_ids: torch.Tensor, token: int, vectors: torch.Tensor
) -> torch.Tensor:
    """Token embeddings ``[B, L, W]`` with the ``token`` position replaced by ``vectors`` ``[B, D]`` zero-padded to W."""
    width = token_embeds.shape[-1]
    if vectors.shape[-1] > width:
        raise ValueError(f"identity vectors are {vectors.shape[-1]}-d, wider than the text encoder ({width})")
    padded = F.pad(vectors.to(token_embeds.dtype), (0, width - vectors.shape[-1]))
    where = (input_ids == token).unsqueeze(-1)
    return torch.where(where, padded[:, None, :], token_embeds)


def encode_identity(
    text_encoder: PreTrainedModel, input_ids: torch.Tensor, token: int, vectors: torch.Tensor
) -> torch.Tensor:
    """Prompt hidden states ``[B, L, W]`` conditioned on unit identity ``vectors`` ``[B, D]``."""
    ids = input_ids.to(vectors.device).expand(len(vectors), -1)

    def hook(_mod: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return replace_id_token(out, args[0], token, vectors)

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        return text_encoder(input_ids=ids).last_hidden_state
    finally:
        handle.remove()


def encode_empty(text_encoder: nn.Module, tokenizer, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[1, L, W]`` hidden states of the empty prompt: the unconditional branch of classifier-free guidance."""
    return text_encoder(input_ids=prompt_ids(tokenizer, "").to(device)).last_hidden_state
