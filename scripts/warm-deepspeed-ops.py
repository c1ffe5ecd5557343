"""Build DeepSpeed's CPU communication op once per machine (it is JIT-compiled on the
first `deepspeed.init_distributed()` and takes 1-2 minutes); later runs load it from
TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions)."""

import os
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")
t0 = time.perf_counter()
from deepspeed.accelerator import get_accelerator  # noqa: E402

builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
if builder is not None:
    builder.load(verbose=False)
print(f"deepspeed ops ready in {time.perf_counter() - t0:.1f} s "
      f"({os.environ.get('TORCH_EXTENSIONS_DIR', 'torch default: ~/.cache/torch_extensions/py311_cpu')})")
