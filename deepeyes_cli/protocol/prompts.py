"""The system prompt and the first user turn.

Our own wording of the instructions the original gives its model (agent, think step by
step, Python in ``<code>`` over the preloaded ``image_i``, web search in ``<tool_call>``,
one tool kind per round, answer in ``<answer>``). The search section and the
``<tool_call>`` option appear only when search tools are offered; without them this is the
code-only prompt the original uses for evaluation. Override with ``agent.system_prompt``,
``agent.prompt_file`` or ``agent.user_instruction``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deepeyes_cli.errors import InputError
from deepeyes_cli.protocol.tags import CODE_TOOL, IMAGE_PLACEHOLDER

if TYPE_CHECKING:
    from deepeyes_cli.protocol.messages import PromptSettings, ToolSpec

_INTRO = """\
You are an agent that answers questions about images. Keep working until the question is \
fully resolved, then give the final answer.

Reason step by step. When the answer cannot be read off the image with confidence, write \
Python to examine it: crop and zoom into a region, rotate, raise the contrast, measure \
colours or sizes, count objects, isolate a feature. Use code whenever it makes the answer \
more reliable.

Say what you plan before each tool call and reflect on what each result shows. You may \
combine tools within a task, but call only one kind of tool per turn."""

_CODE = """\
## Python
- Put code in a <code> block holding one fenced Python block:
<code>
```python
...
```
</code>
- It runs in a Jupyter-style kernel that keeps its state between calls. You get back stdout, \
stderr and every figure shown with plt.show().
- The i-th input image is already loaded as the PIL image `image_i` (image_1, image_2, ...); \
use these variables instead of opening files.
- A run must finish within {timeout:g} seconds. Do not write files to disk."""

_SEARCH = """\
## Search
When you lack the knowledge to answer, search the web. Text search is a web search for a \
query; image search looks up the input image on the web and returns similar images with \
their page titles. These functions are available:
<tools>
{declarations}
</tools>
Call one function per turn, inside <tool_call> tags:
<tool_call>
{example}
</tool_call>
Cross-check what you find; several searches are fine, one per turn. Use image search at most once."""

_INSTRUCTION_CODE = """\
Think step by step and put the final answer inside <answer> </answer>. Use Python when it \
helps. Each turn takes one of these forms: <think> ... </think> <code> ... </code> to run \
code, or <think> ... </think> <answer> ... </answer> to answer."""

_INSTRUCTION_TOOLS = """\
Think step by step and put the final answer inside <answer> </answer>. Use Python or search \
when they help. Each turn takes one of these forms: <think> ... </think> <code> ... </code> \
to run code, <think> ... </think> <tool_call> ... </tool_call> to call a function, or \
<think> ... </think> <answer> ... </answer> to answer."""


def tool_declaration(tool: ToolSpec) -> str:
    """One function declaration line, in the JSON shape the model is asked to call."""
    return json.dumps({"name": tool.name, "description": tool.description, "parameters": tool.parameters},
                      ensure_ascii=False)


def _example_call(tools: Sequence[ToolSpec]) -> str:
    for tool in tools:
        required = tool.parameters.get("required") or []
        if required:
            return json.dumps({"name": tool.name, "arguments": {k: "..." for k in required}})
    return json.dumps({"name": tools[0].name})


def build_system_prompt(tools: Sequence[ToolSpec], code_timeout_s: float) -> str:
    """The built-in system prompt for the offered tools."""
    parts = [_INTRO]
    if any(t.name == CODE_TOOL for t in tools):
        parts.append(_CODE.format(timeout=code_timeout_s))
    calls = [t for t in tools if t.name != CODE_TOOL]
    if calls:
        parts.append(_SEARCH.format(declarations="\n".join(tool_declaration(t) for t in calls),
                                    example=_example_call(calls)))
    return "\n\n".join(parts)


def system_prompt(cfg: PromptSettings, tools: Sequence[ToolSpec], code_timeout_s: float) -> str:
    """The recipe's system prompt: ``agent.system_prompt``, else ``agent.prompt_file``, else ours."""
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    if cfg.prompt_file:
        path = Path(cfg.prompt_file).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read agent.prompt_file {path}: {e.strerror}",
                             hint="fix the path, or unset agent.prompt_file") from e
    return build_system_prompt(tools, code_timeout_s)


def user_instruction(cfg: PromptSettings, tools: Sequence[ToolSpec]) -> str:
    if cfg.user_instruction is not None:
        return cfg.user_instruction
    return _INSTRUCTION_TOOLS if any(t.name != CODE_TOOL for t in tools) else _INSTRUCTION_CODE


def user_prompt(question: str, n_images: int, instruction: str) -> str:
    """The first user turn with one ``<image>`` per input image, as in the RL data:
    ``<image>\\n{question}\\n\\n{instruction}``."""
    text = f"{question.strip()}\n\n{instruction}" if instruction else question.strip()
    return (IMAGE_PLACEHOLDER * n_images + "\n" + text) if n_images else text
