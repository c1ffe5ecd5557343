"""Log-probabilities of the trained tokens, computed only where the mask is 1.

Full logits of a 16k-token sample are ~10 GB in fp32 (rl_design §2.4), so the decoder's
hidden states are gathered at the positions that predict a mask-1 token and the LM head
runs over them in chunks, each chunk under non-reentrant activation checkpointing (its
logits are recomputed in backward instead of kept). SFT and RL share this.
"""

from __future__ import annotations

from typing import Any

CHUNK = 2048


def masked_logprobs(model: Any, inputs: dict[str, Any], loss_mask: Any, chunk: int = CHUNK) -> Any:
    """Log-probabilities (N,) of every token whose ``loss_mask`` is 1, in row-major order.

    ``model`` is the HF ``Qwen2_5_VLForConditionalGeneration`` (unwrapped: ``engine.module``);
    ``inputs`` what :func:`deepeyes_cli.train.data.batch.model_inputs` returns."""
    import torch
    from torch.utils.checkpoint import checkpoint

    hidden = model.model(**inputs, use_cache=False).last_hidden_state
    target = loss_mask[:, 1:].to(hidden.device).bool()
    h = hidden[:, :-1][target]
    y = inputs["input_ids"][:, 1:][target]
    head = model.lm_head

    def piece(h_: Any, y_: Any) -> Any:
        logits = head(h_).float()
        return torch.log_softmax(logits, dim=-1).gather(-1, y_[:, None])[:, 0]

    out = []
    for s in range(0, h.shape[0], chunk):
        hs, ys = h[s:s + chunk], y[s:s + chunk]
        out.append(checkpoint(piece, hs, ys, use_reentrant=False) if torch.is_grad_enabled() else piece(hs, ys))
    # no target (an RL dummy micro-batch): an empty result that still reaches every parameter,
    # so the backward ZeRO-3's collectives wait for happens
    return torch.cat(out) if out else hidden.flatten()[:0].float()


def logprob_module(hf_model: Any) -> Any:
    """``hf_model`` inside an ``nn.Module`` whose forward is :func:`masked_logprobs`, so the
    whole computation goes through ``engine(...)`` (DeepSpeed's forward hooks and
    bookkeeping) with the HF model as its only child (``.hf``)."""
    import torch

    class MaskedLogprobs(torch.nn.Module):
        def __init__(self, hf: Any) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, inputs: dict[str, Any], loss_mask: Any) -> Any:
            return masked_logprobs(self.hf, inputs, loss_mask)

    return MaskedLogprobs(hf_model)
