"""`curate export`: the split's data in the formats the trainers read.

    DATA/export/sft.jsonl, images/         (a) our trajectory records (SFT), images by content hash
    DATA/export/rl.jsonl, val.jsonl        (a) the RL / validation questions as Sample records
    DATA/export/sharegpt/                  (b) LLaMA-Factory: deepeyes_sft.json + dataset_info.json + images/
    DATA/export/verl/train.parquet, val.parquet   (c) verl-style RL parquet

(b) is LLaMA-Factory's ``sharegpt`` formatting with OpenAI-style tags: ``messages`` (system,
then user/assistant alternating; tool results are user turns, so they are masked from the
loss; the assistant turns hold the ``<think>`` prefill) and ``images`` (paths relative to the
dataset folder, one ``<image>`` per image in order); ``dataset_info.json`` is valid JSON.
(c) has the columns of the released DeepEyesV2 RL data: ``data_source``, ``prompt`` (system
and user messages rendered by the protocol, ``<image>`` where each image goes), ``images`` (HF
``Image`` structs holding the PNG bytes), ``ability``, ``env_name``, ``reward_model``
(``ground_truth``, ``style``) and ``extra_info`` (``index``, ``question``, ``answer``, ``split``
and ``sample``: the whole Sample as JSON, so importing the parquet gives it back unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from deepeyes_cli.agent.trajectory import ImagePart, Sample, Trajectory
from deepeyes_cli.curate.store import DataDir, digest_of
from deepeyes_cli.curate.synthesize import read_kept
from deepeyes_cli.fileio import atomic_output, atomic_write
from deepeyes_cli.protocol.tags import IMAGE_PLACEHOLDER


def _copy_image(src_dir: Path, ref_path: str, dst_dir: Path, sha: str) -> str:
    """The image under ``dst_dir/images/`` (hard link, else copy); returns its path relative to ``dst_dir``."""
    target = dst_dir / "images" / f"{sha}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        src = src_dir / ref_path  # an absolute ref_path stays itself
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
    return f"images/{sha}.png"


def localize(traj: Trajectory, src_dir: Path, dst_dir: Path) -> Trajectory:
    out = traj.model_copy(deep=True)
    for ref in out.image_refs():
        if ref.path:
            ref.path = _copy_image(src_dir, ref.path, dst_dir, ref.sha256)
    return out


def sharegpt_row(traj: Trajectory, base_dir: Path, out_dir: Path) -> dict[str, Any]:
    messages, images = [], []
    for m in traj.messages:
        text = []
        for p in m.content:
            if isinstance(p, ImagePart):
                text.append(IMAGE_PLACEHOLDER)
                assert p.image.path is not None
                images.append(_copy_image(base_dir, p.image.path, out_dir, p.image.sha256))
            else:
                text.append(p.text)
        messages.append({"role": m.role, "content": "".join(text)})
    # (no mutate: a Sample holds JSON types only, so any dump mode gives the same; None is as falsy as False)
    sample = traj.sample.model_dump(mode="json")  # pragma: no mutate
    sample_json = json.dumps({**sample, "images": []}, ensure_ascii=False)  # pragma: no mutate
    return {"messages": messages, "images": images, "id": traj.id, "sample": sample_json}


def dataset_info(name: str, file_name: str) -> dict[str, Any]:
    return {name: {"file_name": file_name, "formatting": "sharegpt",
                   "columns": {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}


def verl_features() -> Any:
    from datasets import Features, Image, List, Value

    return Features({
        "data_source": Value("string"),
        "prompt": List({"role": Value("string"), "content": Value("string")}),
        "images": List(Image()),
        "ability": Value("string"),
        "env_name": Value("string"),
        "reward_model": {"ground_truth": Value("string"), "style": Value("string")},
        "extra_info": {"index": Value("string"), "question": Value("string"), "answer": Value("string"),
                       "split": Value("string"), "sample": Value("string")},
    })


def verl_row(sample: Sample, base_dir: Path, system: str | None, instruction: str, env_name: str,
             split: str) -> dict[str, Any]:
    from deepeyes_cli.protocol.prompts import user_prompt

    prompt = [{"role": "system", "content": system}] if system is not None else []
    prompt.append({"role": "user", "content": user_prompt(sample.question, len(sample.images), instruction)})
    images = []
    for ref in sample.images:
        assert ref.path is not None
        images.append({"bytes": (base_dir / ref.path).read_bytes(), "path": None})  # an absolute path stays itself
    # (no mutate: a Sample holds JSON types only, so any dump mode gives the same; None is as falsy as False)
    data = sample.model_dump(mode="json")  # pragma: no mutate
    sample_json = json.dumps({**data, "images": []}, ensure_ascii=False)  # pragma: no mutate
    return {"data_source": sample.data_source, "prompt": prompt, "images": images,
            "ability": str(sample.metadata.get("capability") or sample.data_source), "env_name": env_name,
            "reward_model": {"ground_truth": sample.answer or "", "style": "rule"},
            "extra_info": {"index": sample.id, "question": sample.question, "answer": sample.answer or "",
                           "split": split, "sample": sample_json}}


def write_verl(rows: list[dict[str, Any]], path: Path) -> None:
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # the CLI shows its own progress
    ds = Dataset.from_list(rows, features=verl_features()) if rows else Dataset.from_dict(
        {k: [] for k in verl_features()}, features=verl_features())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_parquet(str(tmp))
    os.replace(tmp, path)


def prompt_texts(recipe: Any) -> tuple[str | None, str]:
    """The system prompt and instruction the recipe's tools give (no sandbox is started)."""
    from deepeyes_cli.protocol.prompts import system_prompt, user_instruction
    from deepeyes_cli.tools.code import CodeTool
    from deepeyes_cli.tools.search import build_search_tools, close_search_tools

    names = recipe.agent.tools
    # (no mutate: the prompt reads the timeout from its own argument, never from the tool)
    code = CodeTool(recipe.sandbox.timeout_s)  # pragma: no mutate
    tools: list[Any] = [code] if "code" in names else []
    wants_search = any(n in names for n in ("search", "image_search"))
    # (no mutate: search tools built when not wanted only cost time, they are filtered by name below)
    search = build_search_tools(recipe) if wants_search else []  # pragma: no mutate
    try:
        tools += [t for t in search if t.name in names]
        return system_prompt(recipe.agent, tools, recipe.sandbox.timeout_s), user_instruction(recipe.agent, tools)
    finally:
        if search:
            close_search_tools(search)


def export(recipe: Any, data: DataDir, force: bool = False) -> dict[str, Any]:
    cfg = recipe.curate.export
    split_dir = data.path / "split"
    if data.summary("split") is None:
        from deepeyes_cli.errors import InputError

        raise InputError(f"{data.path} has not been split yet", hint=f"run `deepeyes curate split {data.path}` first")
    ids = {name: [r["id"] for r in data.read_jsonl(split_dir / f"{name}.jsonl")] for name in ("rl", "sft", "val")}
    kept = read_kept(data)
    # (no mutate: the stage name and the dump mode only have to be the same from run to run)
    digest = digest_of("export",  # pragma: no mutate
                       data.samples_digest(), ids, [t.id for t in kept],
                       cfg.model_dump(mode="json"),  # pragma: no mutate
                       recipe.agent.model_dump(mode="json"),  # pragma: no mutate
                       )
    done = data.done("export", digest)
    if done is not None and not force:
        return {**done, "skipped": True}
    out = data.stage("export")
    samples = {s.id: s for s in data.iter_samples()}
    sft_ids = set(ids["sft"])
    sft = [t for t in kept if t.sample.id in sft_ids]
    syn_dir = data.path / "synthesize"
    summary: dict[str, Any] = {"sft_trajectories": len(sft), "rl": len(ids["rl"]), "val": len(ids["val"]), "files": []}
    if "jsonl" in cfg.formats:
        with atomic_output(out / "sft.jsonl") as f:
            for t in sft:
                f.write(localize(t, syn_dir, out).model_dump_json() + "\n")
        for name in ("rl", "val"):
            with atomic_output(out / f"{name}.jsonl") as f:
                for sid in ids[name]:
                    s = samples[sid].model_copy(deep=True)
                    for ref in s.images:
                        assert ref.path is not None
                        ref.path = _copy_image(data.path, ref.path, out, ref.sha256)
                    f.write(s.model_dump_json(exclude_none=True) + "\n")
        summary["files"] += ["sft.jsonl", "rl.jsonl", "val.jsonl"]  # pragma: no mutate (the first: "=" is the same)
    if "sharegpt" in cfg.formats:
        sg = out / "sharegpt"
        file_name = f"{cfg.dataset_name}.json"
        rows = [sharegpt_row(t, syn_dir, sg) for t in sft]
        # (no mutate: indent and escaping only format the files, which parse to the same rows either way)
        atomic_write(sg / file_name, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")  # pragma: no mutate
        info = json.dumps(dataset_info(cfg.dataset_name, file_name), indent=2)  # pragma: no mutate
        atomic_write(sg / "dataset_info.json", info + "\n")
        summary["files"] += [f"sharegpt/{file_name}", "sharegpt/dataset_info.json"]
    if "verl" in cfg.formats:
        system, instruction = prompt_texts(recipe)
        for name, split in (("rl", "train"), ("val", "val")):
            rows = [verl_row(samples[sid], data.path, system, instruction, cfg.env_name, split) for sid in ids[name]]
            write_verl(rows, out / "verl" / f"{split}.parquet")
        summary["files"] += ["verl/train.parquet", "verl/val.parquet"]
    data.finish("export", digest, summary)
    return summary
