"""SFT (and RL) training data: conversations → collapsed ids + ``loss_mask`` → model inputs.

- :mod:`.sources`: trajectory JSONL / sharegpt / parquet → :class:`SFTConversation`
- :mod:`.encode`: :func:`encode` (the one ``loss_mask``), :class:`ImageBudget` (sizes → visual tokens)
- :mod:`.index`: :func:`build_index` (lengths after image expansion, problems for preflight)
- :mod:`.batch`: :func:`plan_batches` (length-grouped, optional packing, per rank),
  :func:`sample_features` / :func:`collate` / :class:`BatchDataset`, :func:`model_inputs`
  (pixel values, grids, M-RoPE positions from the model's ``get_rope_index``)
"""

from deepeyes_cli.train.data.batch import (
           BatchDataset,
           collate,
           model_inputs,
           plan_batches,
           rope_positions,
           sample_features,
)
from deepeyes_cli.train.data.encode import DataError, Encoded, ImageBudget, encode
from deepeyes_cli.train.data.index import DataIndex, IndexedSample, build_index
from deepeyes_cli.train.data.sources import ImageSource, SFTConversation, read_conversations

__all__ = ["BatchDataset", "DataError", "DataIndex", "Encoded", "ImageBudget", "ImageSource", "IndexedSample",
           "SFTConversation", "build_index", "collate", "encode", "model_inputs", "plan_batches", "read_conversations",
           "rope_positions", "sample_features"]
