"""Multiple choice as the benchmarks ask it: the prompt each one builds from a question and
its options, and the rotations of the options that circular evaluation asks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from deepeyes_cli.bench.items import BenchItem

LETTERS = "ABCDEFGHIJ"


def mcq_prompt(question: str, options: Sequence[str], hint: str | None = None) -> str:
    """VLMEvalKit's multiple-choice prompt (ImageMCQDataset.build_prompt)."""
    text = f"Hint: {hint}\n" if hint else ""
    text += f"Question: {question}\nOptions:\n"
    text += "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(options))
    return text + "Please select the correct answer from the options above. \n"


def rotation_for(key: str, n: int) -> list[int]:
    """A fixed shuffle per item, so the correct option is not always A (DeepEyes v1's V* bug)."""
    k = int(hashlib.sha256(key.encode()).hexdigest(), 16) % n
    return [(i + k) % n for i in range(n)]


def mme_prompt(question: str, options: Sequence[str]) -> str:
    """MME-RealWorld's prompt (its README, VLMEvalKit's ``SYS``)."""
    return (f"{question} The choices are listed below:\n" + "".join(f"({LETTERS[i]}) {o}\n" for i, o in
                                                                    enumerate(options))
            + "Select the best answer to the above multiple-choice question based on the image. Respond with only "
              "the letter (A, B, C, D, or E) of the correct option. \nThe best answer is:")


def rotations(item: BenchItem) -> list[BenchItem]:
    """Circular evaluation: the item once per rotation of its options (rotation 0 = as given),
    each with its prompt rebuilt and its answer letter moved. Not multiple choice: itself."""
    if not item.choices or item.answer is None or item.answer not in LETTERS or "raw_question" not in item.meta:
        return [item]
    n, gold = len(item.choices), LETTERS.index(item.answer)
    out = []
    for k in range(n):
        opts = item.choices[k:] + item.choices[:k]
        question = (mme_prompt(item.meta["raw_question"], opts) if item.meta.get("style") == "mme"
                    else mcq_prompt(item.meta["raw_question"], opts, item.meta.get("hint")))
        out.append(BenchItem(f"{item.id}@c{k}" if k else item.id, question, LETTERS[(gold - k) % n], item.images,
                             opts, item.category, item.answers, {**item.meta, "rotation": k, "rotations": n}))
    return out
