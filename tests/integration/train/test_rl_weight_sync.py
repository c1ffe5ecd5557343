"""The in-process weight push on the tiny model, without vLLM: the sync groups (every
parameter exactly once, a decoder layer per group, in model order, the vision tower skipped
only while frozen) and both push kernels delivering exactly the trainer's tensors.

The engine side is a stand-in with vLLM's two entry points the push uses (``apply_model``
→ ``load_weights(pairs)``, ``collective_rpc("reload_weights", weights_iterator=…)``), over a
second copy of the model: what arrives is compared with the trainer's weights. The real
engine is tested in tests/vllm_real (CPU build) and tests/gpu."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from deepeyes_cli.models.loading import load_model
from deepeyes_cli.train.rl import weight_sync
from deepeyes_cli.train.rl.weight_sync import is_vision, push_in_process, weight_groups


@pytest.fixture(scope="module")
def trainer_model(tiny_model_dir: Path) -> Any:
    torch.manual_seed(0)
    model = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    with torch.no_grad():
        for p in model.parameters():  # "updated" weights, different from the engine's copy
            p.add_(torch.randn_like(p) * 0.01)
    return model


class StandInLLM:
    """vLLM's ``LLM`` as the push sees it; loads by HF name into ``model`` and records calls."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.params = dict(model.named_parameters())
        self.loads: list[list[str]] = []
        self.resets: list[str] = []

    def _load(self, pairs: Any) -> None:
        batch = []
        for name, t in pairs:
            with torch.no_grad():
                self.params[name].copy_(t)
            batch.append(name)
        self.loads.append(batch)

    def apply_model(self, fn: Any) -> list[Any]:
        class M:
            load_weights = staticmethod(self._load)
        return [fn(M())]

    def collective_rpc(self, method: str, kwargs: dict[str, Any]) -> list[Any]:
        assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True
        return [self._load(kwargs["weights_iterator"])]

    def reset_prefix_cache(self) -> None:
        self.resets.append("prefix")

    def reset_mm_cache(self) -> None:
        self.resets.append("mm")


class Policy:
    def __init__(self, llm: StandInLLM) -> None:
        self.llm = llm

    def call(self, fn: Any) -> Any:
        return fn(self.llm)


def _layer(name: str) -> int | None:
    m = re.search(r"language_model\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("include_vision", [False, True])
def test_groups_cover_every_parameter_once_layer_by_layer_in_order(trainer_model: Any, include_vision: bool) -> None:
    names = [n for n, _ in trainer_model.named_parameters()]
    groups = weight_groups(trainer_model, include_vision)
    flat = [n for g in groups for n, _ in g]
    want = names if include_vision else [n for n in names if not is_vision(n)]
    assert sorted(flat) == sorted(want) and len(flat) == len(set(flat))  # each exactly once
    assert flat == want  # in model order
    layers = [{_layer(n) for n, _ in g} for g in groups]
    decoder = [ls for ls in layers if ls != {None}]
    n_layers = trainer_model.config.text_config.num_hidden_layers
    assert decoder == [{i} for i in range(n_layers)]  # one group per decoder layer, 0…N-1, never mixed
    vision = [g for g in groups if any(is_vision(n) for n, _ in g)]
    assert len(vision) == (1 if include_vision else 0)
    if vision:
        assert all(is_vision(n) for n, _ in vision[0])  # the tower is a group of its own
    assert groups[0][0][0].endswith("embed_tokens.weight") or include_vision
    assert groups[-1] == [("lm_head.weight", trainer_model.lm_head.weight)]


@pytest.mark.parametrize("kernel", ["load_weights", "layerwise_reload"])
def test_push_delivers_the_trainer_weights_and_skips_the_frozen_tower(trainer_model: Any, tiny_model_dir: Path,
                                                                      kernel: str) -> None:
    engine_model = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    before = {n: p.detach().clone() for n, p in engine_model.named_parameters()}
    llm = StandInLLM(engine_model)
    n = push_in_process(Policy(llm), trainer_model, include_vision=False, kernel=kernel)
    text = [name for name, _ in trainer_model.named_parameters() if not is_vision(name)]
    assert n == len(text)
    pushed = [x for batch in llm.loads for x in batch]
    assert pushed == text  # each once, in order
    # load_weights: one call per group (ZeRO-3 gathers one layer at a time); the reload: one streamed call
    assert len(llm.loads) == (len(weight_groups(trainer_model)) if kernel == "load_weights" else 1)
    assert llm.resets == ["prefix"]
    mine = dict(trainer_model.named_parameters())
    for name, p in engine_model.named_parameters():
        if is_vision(name):
            assert torch.equal(p, before[name]), name  # the frozen tower is left as it was
        else:
            assert torch.equal(p, mine[name]), name


def test_push_with_the_tower_resets_the_multimodal_cache(trainer_model: Any, tiny_model_dir: Path) -> None:
    llm = StandInLLM(load_model(str(tiny_model_dir), dtype="float32", device="cpu"))
    n = push_in_process(Policy(llm), trainer_model, include_vision=True)
    assert n == len(list(trainer_model.parameters()))
    assert llm.resets == ["prefix", "mm"]  # cached vision-encoder outputs came from the old tower


@pytest.mark.parametrize("kernel", ["load_weights", "layerwise_reload"])
def test_each_tensor_is_consumed_inside_its_own_gather(trainer_model: Any, tiny_model_dir: Path, kernel: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ZeRO-3 a group's full tensors exist only inside its ``GatheredParameters``: the
    engine must take them there (the stream is lazy), and one group at a time is gathered."""
    from contextlib import contextmanager

    by_id = {id(p): n for n, p in trainer_model.named_parameters()}
    open_now: list[set[str]] = []
    most = [0]

    @contextmanager
    def gathered(params: list[Any]) -> Any:
        open_now.append({by_id[id(p)] for p in params})
        most[0] = max(most[0], len(open_now))
        yield
        open_now.pop()

    monkeypatch.setattr(weight_sync, "gathered", gathered)
    llm = StandInLLM(load_model(str(tiny_model_dir), dtype="float32", device="cpu"))
    taken = llm._load

    def load(pairs: Any) -> None:
        def checked() -> Any:
            for name, t in pairs:
                assert open_now and name in open_now[-1], name  # consumed while its group is gathered
                yield name, t
        taken(checked())

    monkeypatch.setattr(llm, "_load", load)
    push_in_process(Policy(llm), trainer_model, kernel=kernel)
    assert most[0] == 1 and not open_now and llm.loads


def test_unknown_kernel_is_refused(trainer_model: Any) -> None:
    from deepeyes_cli.errors import BackendError

    with pytest.raises(BackendError, match="unknown push kernel"):
        push_in_process(Policy(StandInLLM(trainer_model)), trainer_model, kernel="nccl")


def test_modes() -> None:
    assert weight_sync.sync_mode("auto") == "push" and weight_sync.sync_mode("reload") == "reload"
    assert weight_sync.push_kernel("cuda:0") == "load_weights"
    assert weight_sync.push_kernel("cpu") == "layerwise_reload"


class StandInEngine:
    """``LLM.llm_engine`` as the pump sees it, with nothing to run."""

    def has_unfinished_requests(self) -> bool:
        return False


class PhasedLLM(StandInLLM):
    """Also records the engine-control calls, in order, with the loads among them."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.llm_engine = StandInEngine()
        self.calls: list[str] = []

    def _load(self, pairs: Any) -> None:
        super()._load(pairs)
        self.calls.append("load:" + ("visual" if any(is_vision(n) for n in self.loads[-1]) else "text"))

    def sleep(self, level: int) -> None:
        self.calls.append(f"sleep:{level}")

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append("wake:" + ",".join(tags or ["all"]))

    def reset_prefix_cache(self) -> None:
        self.calls.append("reset_prefix")

    def reset_mm_cache(self) -> None:
        self.calls.append("reset_mm")


@pytest.mark.parametrize("level", [1, 2])
def test_colocated_engine_phases_sleep_wake_and_sync(trainer_model: Any, tiny_model_dir: Path, level: int) -> None:
    import asyncio

    from deepeyes_cli.models.loading import load_processor
    from deepeyes_cli.policy.vllm_colocated import VLLMColocated
    from deepeyes_cli.train.rl.rollout import RolloutEngine

    llm = PhasedLLM(load_model(str(tiny_model_dir), dtype="float32", device="cpu"))
    policy = VLLMColocated(llm, load_processor(str(tiny_model_dir)).tokenizer)
    eng = RolloutEngine(policy, "vllm", weight_sync="push", push_kernel="load_weights", sleep_level=level)
    try:
        eng.before_rollout(trainer_model)
        assert llm.calls == []  # awake from the start
        eng.after_rollout(trainer_model)
        assert llm.calls == [f"sleep:{level}"] and eng.asleep
        llm.calls.clear()
        assert eng.sync(trainer_model) > 0
        loads = [c for c in llm.calls if c.startswith("load:")]
        # wake the weights, push them, then the KV cache, and drop the stale prefix cache
        assert llm.calls[0] == "wake:weights" and llm.calls[-2:] == ["wake:kv_cache", "reset_prefix"]
        # level 2 discarded the vision tower's weights too: it travels with the rest
        assert ("load:visual" in loads) == (level == 2) and ("reset_mm" in llm.calls) == (level == 2)
        assert not eng.asleep
        # rollouts after a sleep without an update (validation) find the engine awake and current
        eng.after_rollout(trainer_model)
        llm.calls.clear()
        eng.before_rollout(trainer_model)
        assert llm.calls[0] == "wake:weights" and not eng.asleep
    finally:
        asyncio.run(policy.aclose())
