"""Runs INSIDE each kernel, once, right after it starts (its source is sent as a cell).

It imports nothing from deepeyes_cli (the kernel may run another Python, in a container) and
leaves only ``plt`` in the user's namespace, as the original sandbox did. It:

- preloads numpy, PIL and matplotlib (agg), so cells do not pay for importing them;
- turns every image shown into ``image/png`` display data: ``display(pil_image)``,
  ``Image.show()``, an image as the cell's last expression, ``display(fig)``, ``plt.show()``
  and matplotlib figures still open when the cell ends (then closed);
- caps images at ``max_images`` per cell (the rest are neither encoded nor sent; their count is
  reported) and scales each down to at most ``max_pixels`` pixels;
- reports how many images it dropped as display data of type ``DROPPED_MIME``;
- registers ``_deepeyes_sandbox`` in ``sys.modules`` with ``load_inputs(namespace, specs)``
  (the session's input images, raw bytes).
"""

from __future__ import annotations

import sys
import types
from typing import Any

DROPPED_MIME = "application/vnd.deepeyes.dropped+json"


def setup(max_images: int, max_pixels: int) -> None:
    import io
    import os
    import shutil

    seed, config_dir = os.environ.get("DEEPEYES_MPL_CACHE"), os.environ.get("MPLCONFIGDIR")
    if seed and config_dir and os.path.isdir(seed):  # matplotlib's font list, built once by the host
        os.makedirs(config_dir, exist_ok=True)
        for name in os.listdir(seed):
            shutil.copy(os.path.join(seed, name), config_dir)

    import matplotlib
    import numpy  # noqa: F401  (preloaded for the user's cells)
    import PIL.Image
    import PIL.PngImagePlugin

    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from IPython.display import display
    from matplotlib.figure import Figure

    shell = get_ipython()
    state = {"shown": 0, "dropped": 0, "skip": False}

    def take_slot() -> bool:
        if state["shown"] >= max_images:
            state["dropped"] += 1
            state["skip"] = True
            return False
        state["shown"] += 1
        return True

    def pil_png(img: Any) -> bytes | None:
        if not take_slot():
            return None
        w, h = img.size
        if w * h > max_pixels:
            scale = (max_pixels / (w * h)) ** 0.5
            img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), PIL.Image.Resampling.LANCZOS)
        if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.mode else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def figure_png(fig: Any) -> bytes | None:
        if not take_slot():
            return None
        w, h = fig.get_size_inches() * fig.dpi
        dpi = fig.dpi if w * h <= max_pixels else fig.dpi * (max_pixels / (w * h)) ** 0.5
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return buf.getvalue()

    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type(PIL.Image.Image, pil_png)
    formatters["image/png"].for_type(Figure, figure_png)
    if "image/jpeg" in formatters:  # one encoding per image is enough
        formatters["image/jpeg"].for_type(PIL.Image.Image, lambda img: None)

    original_format = shell.display_formatter.format
    original_publish = shell.display_pub.publish

    def format_(obj: Any, include: Any = None, exclude: Any = None) -> Any:
        state["skip"] = False
        return original_format(obj, include=include, exclude=exclude)

    def publish(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if state["skip"] and "image/png" not in data:  # an image over the cap: say nothing
            state["skip"] = False
            return None
        return original_publish(data, *args, **kwargs)

    shell.display_formatter.format = format_
    shell.display_pub.publish = publish

    def show(*args: Any, **kwargs: Any) -> None:
        for num in plt.get_fignums():
            display(plt.figure(num))
        plt.close("all")

    plt.show = show
    PIL.Image.Image.show = lambda self, *a, **k: display(self)  # type: ignore[method-assign]

    def reset(*_: Any) -> None:
        state.update(shown=0, dropped=0, skip=False)

    def after_cell(*_: Any) -> None:
        if plt.get_fignums():
            show()
        if state["dropped"]:  # told only when it happened: no extra work for ordinary cells
            state["skip"] = False
            original_publish({DROPPED_MIME: {"dropped": state["dropped"]}}, metadata={})

    shell.events.register("pre_run_cell", reset)
    shell.events.register("post_execute", after_cell)
    try:
        shell.InteractiveTB.set_mode("Plain")
    except Exception:
        pass
    for scheme in ("nocolor", "NoColor"):
        try:
            shell.colors = scheme
            break
        except Exception:
            continue

    def load_inputs(namespace: dict[str, Any], specs: list[tuple[str, str, int, int, str]]) -> None:
        for name, mode, width, height, path in specs:
            with open(path, "rb") as f:
                namespace[name] = PIL.Image.frombytes(mode, (width, height), f.read())

    lighten(shell)
    module = types.ModuleType("_deepeyes_sandbox")
    module.load_inputs = load_inputs  # type: ignore[attr-defined]
    sys.modules["_deepeyes_sandbox"] = module
    shell.user_ns["plt"] = plt


def lighten(shell: Any) -> None:
    """Spare ipykernel work that only a notebook needs; each step is skipped where this ipykernel
    lacks what it relies on. Every message ipykernel publishes, and every stream flush, wakes
    its IO thread and hands the GIL over: a warm ``print(1)`` made twelve such hand-offs.

    - No ``execute_input`` broadcast (it echoes the code to other frontends; there are none).
    - ``flush()`` of stdout/stderr returns at once when nothing was written since the last flush
      began: ipykernel flushes both streams twice per cell, mostly with nothing to send. A flush
      already under way runs on the IO thread before anything published after it (the reply's
      ``idle`` included), so nothing is lost or reordered.
    - A flush that has something to send schedules one callback on the IO thread, not two.
    """
    import threading

    kernel = getattr(shell, "kernel", None)
    if kernel is not None and callable(getattr(kernel, "_publish_execute_input", None)):
        kernel._publish_execute_input = lambda *args, **kwargs: None
    needed = ("_flush_pending", "_subprocess_flush_pending", "_flush", "pub_thread", "flush_timeout", "flush")
    for stream in (sys.stdout, sys.stderr):
        pub = getattr(stream, "pub_thread", None)
        if not all(hasattr(stream, name) for name in needed) or not hasattr(pub, "schedule"):
            continue

        def flush(stream: Any = stream, library_flush: Any = stream.flush) -> None:
            if not (stream._flush_pending or stream._subprocess_flush_pending):
                return
            thread = getattr(stream.pub_thread, "thread", None)
            if thread is None or not thread.is_alive() or thread.ident == threading.get_ident():
                library_flush()  # a forked child, or the IO thread itself: ipykernel's own way
                return
            done = threading.Event()

            def flush_then_signal() -> None:
                try:
                    stream._flush()
                finally:
                    done.set()

            stream.pub_thread.schedule(flush_then_signal)
            done.wait(stream.flush_timeout)

        stream.flush = flush  # type: ignore[method-assign]


def bootstrap_code(max_images: int, max_pixels: int) -> str:
    """The cell that sets a fresh kernel up, leaving no names behind but ``plt``."""
    from pathlib import Path

    source = Path(__file__).read_text()  # DROPPED_MIME travels with it
    return (f"exec(compile({source!r} + '\\nsetup({int(max_images)}, {int(max_pixels)})', "
            f"'<deepeyes-sandbox-setup>', 'exec'), {{'__name__': '_deepeyes_setup'}})")
