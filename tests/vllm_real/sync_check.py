"""Did the weight sync carry the update into vLLM? vLLM's CPU build and transformers differ by up to
~0.04 in a greedy token's logprob on the tiny model (the same weights, no update: measured), which is
as large as what one small update moves. So compare the changes: the update must move vLLM's
logprobs as it moved the trainer's. Without the sync vLLM would not move at all."""

from __future__ import annotations


def gap(a: list[float], b: list[float], k: int) -> float:
    """Mean absolute difference of the first ``k`` logprobs."""
    return sum(abs(x - y) for x, y in zip(a[:k], b[:k], strict=False)) / k


def assert_update_reached_vllm(hf_before: tuple[list[int], list[float]], v_before: tuple[list[int], list[float]],
                               hf_after: tuple[list[int], list[float]], v_after: tuple[list[int], list[float]],
                               k: int = 4, min_move: float = 1e-3) -> None:
    assert v_before[0][:k] == hf_before[0][:k] and v_after[0][:k] == hf_after[0][:k], (v_before, hf_before,
                                                                                        v_after, hf_after)
    if hf_after[0][:k] != hf_before[0][:k]:
        return  # the update changed the greedy tokens, and vLLM's changed to the same ones
    d_hf = [a - b for a, b in zip(hf_after[1][:k], hf_before[1][:k], strict=True)]
    d_v = [a - b for a, b in zip(v_after[1][:k], v_before[1][:k], strict=True)]
    moved = gap(hf_after[1], hf_before[1], k)
    assert moved > min_move, d_hf  # the update changed the model
    off = gap(d_v, d_hf, k)
    assert off < 0.1 * moved, (d_v, d_hf)
