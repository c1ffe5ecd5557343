"""The text the model reads, exactly as the original DeepEyesV2 environment wrote it.

Text search (``search_utils.py``)::

    A Google search for '{query}' found {N} results:

    ## Web Results
    1. [title](link)
    Date published: …        (only when the hit has a date)

    snippet                  (only when the hit has one)

Image search: ``A Google image search for the image found {N} results:\\n\\n## Web Results\\n``
then ``{i}. <image>\\n[{title}] \\n`` per hit whose thumbnail could be loaded (the original
skipped hits whose cached image was missing), joined by a blank line. The agent runtime
wraps this in ``<tool_response>`` and turns each ``<image>`` into vision tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepeyes_cli.search.types import Hit

IMAGE_PLACEHOLDER = "<image>"


def format_text_results(query: str, hits: Sequence[Hit]) -> str:
    entries = []
    for i, hit in enumerate(hits, 1):
        date = f"\nDate published: {hit.date}" if hit.date else ""
        snippet = f"\n{hit.snippet}" if hit.snippet else ""
        entries.append(f"{i}. [{hit.title}]({hit.url}){date}\n{snippet}")
    return f"A Google search for '{query}' found {len(entries)} results:\n\n## Web Results\n" + "\n\n".join(entries)


def format_image_results(hits: Sequence[Hit]) -> str:
    """``hits`` are those shown with a thumbnail, in order (one ``<image>`` each)."""
    entries = [f"{i}. {IMAGE_PLACEHOLDER}\n[{hit.title}] \n" for i, hit in enumerate(hits, 1)]
    return (f"A Google image search for the image found {len(entries)} results:\n\n## Web Results\n"
            + "\n\n".join(entries))
