"""The benchmarks `deepeyes bench` knows: where their files come from, how they are laid
out, how each is scored and what the paper reports for DeepEyesV2-7B.

Figures are the paper's (README ``assets/result.png``); None where the paper gives none or
the source is unverified. Search benchmarks get the search tools by default; the perception
and math ones run as the original evaluated them, with the code tool only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from deepeyes_cli.errors import InputError
from deepeyes_cli.suggest import closest

Headline = Literal["accuracy", "cycles_mean", "points", "versions_mean", "f1_mean", "split_harmonic", "simplevqa_f1"]


@dataclass(frozen=True)
class BenchSpec:
    name: str
    title: str
    adapter: str  # bench/adapters.py: row -> BenchItem
    scorer: str  # bench/scoring.py: the benchmark's own rule
    headline: Headline
    files: tuple[str, ...]  # glob patterns looked for in the data folder, best first
    layout: str  # what a user must put there
    download: str
    search: bool = False  # offer the search tools by default
    multiple_choice: bool = False  # circular evaluation applies
    judge_prompt: Literal["answer", "math"] = "answer"
    paper: float | None = None  # DeepEyesV2-7B in the paper, same unit as the headline
    paper_note: str = ""
    headline_label: str = "accuracy (%)"
    aliases: tuple[str, ...] = field(default_factory=tuple)


_MCQ_TSV = "VLMEvalKit TSV (index, image base64, question, A, B, [C, D], answer letter, [category])"

REGISTRY: dict[str, BenchSpec] = {s.name: s for s in [
    BenchSpec("vstar", "V* Bench (191 items)", "vstar", "mcq", "accuracy",
              ("VStarBench.tsv", "*.tsv", "test_questions.jsonl", "*.parquet", "data", "direct_attributes"),
              f"{_MCQ_TSV}; or craigwu/vstar_bench: test_questions.jsonl + direct_attributes/ relative_position/ "
              "(or only the folders of <name>.jpg + <name>.json); or the lmms-eval parquet",
              "https://huggingface.co/datasets/craigwu/vstar_bench (or VStarBench.tsv: "
              "https://huggingface.co/datasets/xjtupanda/VStar_Bench)",
              multiple_choice=True, paper=81.8, aliases=("v*", "vstarbench")),
    BenchSpec("hrbench4k", "HR-Bench 4K", "hrbench", "mcq", "cycles_mean",
              ("hr_bench_4k.tsv", "HRBench4K.tsv", "hr_bench_4k.parquet", "*.tsv", "*.parquet"),
              "hr_bench_4k.tsv or .parquet (index, question, A-D, answer, category, cycle_category, image base64)",
              "https://huggingface.co/datasets/DreamMr/HR-Bench", multiple_choice=True, paper=77.9,
              paper_note="mean over the option cycles", aliases=("hrbench-4k", "hr-bench-4k")),
    BenchSpec("hrbench8k", "HR-Bench 8K", "hrbench", "mcq", "cycles_mean",
              ("hr_bench_8k.tsv", "HRBench8K.tsv", "hr_bench_8k.parquet", "*.tsv", "*.parquet"),
              "hr_bench_8k.tsv or .parquet (index, question, A-D, answer, category, cycle_category, image base64)",
              "https://huggingface.co/datasets/DreamMr/HR-Bench", multiple_choice=True, paper=73.8,
              paper_note="mean over the option cycles", aliases=("hrbench-8k", "hr-bench-8k")),
    BenchSpec("mme-realworld", "MME-RealWorld", "mme", "mme", "accuracy",
              ("MME_RealWorld.json", "MME-RealWorld.tsv", "*.json", "*.tsv", "*.parquet", "data"),
              "MME_RealWorld.json + the image folders it names (Image), or the Base64 JSON/TSV, or the "
              "lmms-eval parquet", "https://huggingface.co/datasets/yifanzhang114/MME-RealWorld",
              multiple_choice=True, paper=64.9, paper_note="which of full/Lite the paper reports is unverified",
              aliases=("mmerealworld", "mme-rw")),
    BenchSpec("mme-realworld-lite", "MME-RealWorld Lite", "mme", "mme", "accuracy",
              ("mme_realworld_lite.tsv", "MME-RealWorld-Lite.tsv", "*.tsv", "*.parquet", "*.json", "data"),
              "mme_realworld_lite.tsv (index, image, question, multi-choice options, answer, category, l2-category)",
              "https://huggingface.co/datasets/yifanzhang114/MME-RealWorld-Base64", multiple_choice=True,
              aliases=("mme-rw-lite", "mmerealworld-lite")),
    BenchSpec("ocrbench", "OCRBench", "ocrbench", "ocrbench", "points",
              ("OCRBench.json", "OCRBench.tsv", "*.json", "*.tsv", "*.parquet", "data"),
              "OCRBench.json + OCRBench_Images/ (image_path is relative to it), or OCRBench.tsv, or "
              "echo840/OCRBench parquet", "https://github.com/Yuliang-Liu/MultimodalOCR (OCRBench.json, "
              "images on Google Drive) or https://huggingface.co/datasets/echo840/OCRBench",
              paper=882, headline_label="Final Score (points out of the items)"),
    BenchSpec("mathvista", "MathVista testmini", "mathvista", "mathvista", "accuracy",
              ("testmini.json", "MathVista_MINI.tsv", "*.tsv", "testmini*.parquet", "*.parquet", "data"),
              "data/testmini.json (dict by pid) + images/{pid}.jpg, or MathVista_MINI.tsv, or the HF parquet "
              "(split testmini)", "https://huggingface.co/datasets/AI4Math/MathVista",
              judge_prompt="math", paper=71.9, aliases=("mathvista-mini", "mathvista_mini")),
    BenchSpec("mathverse", "MathVerse testmini", "mathverse", "mathverse", "versions_mean",
              ("testmini.json", "MathVerse_MINIV.tsv", "MathVerse_MINI.tsv", "*.tsv", "testmini*.parquet",
               "*.parquet", "*.json", "data"),
              "testmini.json + images/ (image is relative), or MathVerse_MINIV.tsv, or the HF parquet (testmini)",
              "https://huggingface.co/datasets/AI4Math/MathVerse", judge_prompt="math", paper=52.7,
              paper_note="mean over the 5 problem versions", aliases=("mathverse-mini", "mathverse_mini")),
    BenchSpec("mmsearch", "MMSearch end2end", "mmsearch", "f1", "f1_mean",
              ("end2end*.parquet", "*.parquet", "data", "*.json", "*.jsonl"),
              "the end2end parquet (sample_id, query, query_image, area, subfield, gt_answer, "
              "alternative_gt_answers)", "https://huggingface.co/datasets/CaraJ/MMSearch (config end2end)",
              search=True, paper=63.7, paper_note="the paper's subset and judge are unverified; ours: end2end F1",
              headline_label="end2end F1 (%)"),
    BenchSpec("realx", "RealX-Bench", "realx", "rewards", "accuracy",
              ("*.parquet", "data", "*.json", "*.jsonl"),
              "the parquet of glowol/RealXBench (query, answer 'x or y', perception, search, reason, image)",
              "https://huggingface.co/datasets/glowol/RealXBench", search=True,
              paper_note="no scoring released; ours: rules then the judge, any 'or' alternative accepted",
              aliases=("realxbench", "realx-bench")),
    BenchSpec("fvqa", "FVQA-test", "verl", "exact_then_judge", "accuracy",
              ("fvqa_test.parquet", "*.parquet", "data"),
              "fvqa_test.parquet (veRL rows: prompt, images, reward_model{ground_truth, candidate_answers})",
              "https://huggingface.co/datasets/lmms-lab/FVQA", search=True, paper=60.6,
              paper_note="columns and the paper's metric are unverified", aliases=("fvqa-test",)),
    BenchSpec("infoseek", "InfoSeek", "infoseek", "infoseek", "split_harmonic",
              ("infoseek_val.jsonl", "infoseek_test.jsonl", "*.jsonl", "*.parquet", "data"),
              "infoseek_val.jsonl (+ infoseek_val_qtype.jsonl) + images/<image_id>.jpg, or a veRL parquet "
              "(MMSearch-R1's subset)", "https://github.com/edchengg/infoseek_eval", search=True, paper=51.1,
              paper_note="the subset the paper used is unverified",
              headline_label="harmonic mean of unseen-question and unseen-entity accuracy (%)"),
    BenchSpec("simplevqa", "SimpleVQA", "simplevqa", "simplevqa", "simplevqa_f1",
              ("test.parquet", "SimpleVQA.tsv", "*.parquet", "*.tsv", "data"),
              "test.parquet (data_id, image, question, answer, language, vqa_category)",
              "https://huggingface.co/datasets/m-a-p/SimpleVQA", search=True, paper=59.4,
              paper_note="the paper's judge is unverified", headline_label="F1 (%)",
              aliases=("simple-vqa",)),
    BenchSpec("heldout", "A held-out set in veRL parquet (e.g. curate's RL validation split)", "verl", "rewards",
              "accuracy", ("*.parquet", "data"),
              "veRL rows: prompt (messages), images [{bytes}], reward_model{ground_truth[, candidate_answers]}, "
              "data_source (the report's categories)", "your own data (deepeyes curate writes it)",
              paper_note="scored by rewards/: rules, then the judge", aliases=("verl", "val")),
    BenchSpec("mini", "Mini colour benchmark (built in, offline)", "mini", "mcq", "accuracy", (),
              "built in: generated offline (colour squares, 4 options); no download", "builtin", multiple_choice=True,
              aliases=("builtin:mini",)),
]}


def names() -> list[str]:
    return list(REGISTRY)


def get_spec(name: str) -> BenchSpec:
    """The benchmark called ``name`` (or an alias); a misspelling gets a "did you mean"."""
    key = name.strip().lower()
    if key in REGISTRY:
        return REGISTRY[key]
    for spec in REGISTRY.values():
        if key in spec.aliases:
            return spec
    close = closest(key, [*REGISTRY, *(a for s in REGISTRY.values() for a in s.aliases)])
    if close is not None:
        close = next((s.name for s in REGISTRY.values() if close == s.name or close in s.aliases), close)
    raise InputError(f"unknown benchmark '{name}'",
                     hint=(f"did you mean '{close}'? " if close else "") + "see `deepeyes bench ls`")
