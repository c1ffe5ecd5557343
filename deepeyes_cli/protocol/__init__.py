"""The DeepEyesV2 protocol: prompts (``prompts``), tags, stop strings and result templates
(``tags``), parsing of model turns (``parser``), ChatML rendering (``render``), tool
results as user turns (``observation``), image handling (``images``) and the original's
indentation fixer (``indentation``)."""

from deepeyes_cli.protocol.parser import ParsedTurn, extract_answer, extract_code, parse_turn
from deepeyes_cli.protocol.render import prompt_images, prompt_spans, render_prompt
from deepeyes_cli.protocol.tags import PREFILL_AFTER_TOOL, STOP_STRINGS, format_code_result

__all__ = ["PREFILL_AFTER_TOOL", "STOP_STRINGS", "ParsedTurn", "extract_answer", "extract_code",
           "format_code_result", "parse_turn", "prompt_images", "prompt_spans", "render_prompt"]
