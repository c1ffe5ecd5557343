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
- cuts long texts and drops unused display data before they leave the kernel (``cap_messages``);
- spares ipykernel notebook-only work on every cell (``lighten``);
- registers ``_deepeyes_sandbox`` in ``sys.modules`` with ``load_inputs(namespace, specs)``
  (the session's input images, raw bytes).
"""

from __future__ import annotations

import sys
import types
from typing import Any

DROPPED_MIME = "application/vnd.deepeyes.dropped+json"
CUT_KEY = "deepeyes_cut"  # content key: [characters kept before the gap, characters left out] of a cut text
KEPT_MIMES = ("text/plain", "image/png", DROPPED_MIME)  # all the host reads of display data


def setup(max_images: int, max_pixels: int, max_chars: int) -> None:
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
        wait_for_child_output()
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
    flush_before_fork()

    def drop_image() -> None:
        state["dropped"] += 1

    cap_messages(shell.kernel.session, max_chars, max_pixels, drop_image)
    module = types.ModuleType("_deepeyes_sandbox")
    module.load_inputs = load_inputs  # type: ignore[attr-defined]
    sys.modules["_deepeyes_sandbox"] = module
    shell.user_ns["plt"] = plt


def cap_messages(session: Any, max_chars: int, max_pixels: int, drop_image: Any) -> None:
    """Cut what leaves the kernel down to what the host keeps, before it is encoded: ``print`` of a
    100 MB string would otherwise cost the kernel a few copies of it, and the server a 100 MB
    message to decode. A text longer than twice ``max_chars`` keeps its first and last
    ``max_chars`` characters, and ``CUT_KEY`` says where the gap is and how long it was (the host
    adds the marker). Display data keeps only ``KEPT_MIMES``; an image too large to come from our
    own formatters (raw data published by hand) is dropped and counted. Error texts are cut too.
    (Hostile code can still send big messages by hand: the host caps message size on its sockets.)"""
    max_b64 = int((max_pixels * 4 * 1.25 + (1 << 20)) * 4 / 3)  # an RGBA PNG of max_pixels, with room

    def cut(text: Any) -> tuple[Any, list[int] | None]:
        if not isinstance(text, str) or len(text) <= 2 * max_chars:
            return text, None
        return text[:max_chars] + text[-max_chars:], [max_chars, len(text) - 2 * max_chars]

    def cut_inline(text: Any) -> Any:
        short, gap = cut(text)
        return short if gap is None else f"{short[:max_chars]}\n…\n{short[max_chars:]}"

    def capped(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        if msg_type == "stream":
            text, gap = cut(content.get("text"))
            return content if gap is None else {**content, "text": text, CUT_KEY: gap}
        if msg_type in ("display_data", "execute_result", "update_display_data"):
            data = content.get("data")
            if not isinstance(data, dict):
                return content
            kept = {k: v for k, v in data.items() if k in KEPT_MIMES}
            png = kept.get("image/png")  # base64 text, or still raw bytes (base64-encoded when serialized)
            size = len(png) if isinstance(png, str) else len(png) * 4 // 3 if isinstance(png, bytes) else 0
            if size > max_b64:
                del kept["image/png"]
                drop_image()
            out = {**content, "data": kept, "metadata": {}}
            text, gap = cut(kept.get("text/plain"))
            if gap is not None:
                out["data"] = {**kept, "text/plain": text}
                out[CUT_KEY] = gap
            return out
        if msg_type == "error" or (msg_type == "execute_reply" and content.get("status") == "error"):
            out = {**content, "ename": cut_inline(content.get("ename")), "evalue": cut_inline(content.get("evalue"))}
            frames = content.get("traceback")
            if isinstance(frames, list):
                frames = frames if len(frames) <= 100 else [*frames[:50], "…", *frames[-50:]]
                out["traceback"] = [cut_inline(f) for f in frames]
            return out
        return content

    library_serialize = session.serialize

    def serialize(msg: Any, ident: Any = None) -> Any:
        if isinstance(msg, dict) and isinstance(msg.get("content"), dict):
            msg_type = msg.get("msg_type") or (msg.get("header") or {}).get("msg_type", "")
            msg = {**msg, "content": capped(msg_type, msg["content"])}
        return library_serialize(msg, ident)

    session.serialize = serialize


SYNC_MARK = "\x00deepeyes-sync\x00"


def wait_for_child_output(limit_s: float = 0.5) -> None:
    """Make sure ipykernel's reader threads have taken in everything child processes
    (``os.system``, ``subprocess``) wrote to the stdout/stderr file descriptors before the
    cell's output is flushed; what they take in after the cell has ended is lost to it.

    An empty pipe is not enough: a reader may have read the last bytes and not yet handed
    them to the stream (a busy machine deschedules it right there). So, once the pipe is
    drained, a marker goes through it: the pipe is first-in first-out, so when the reader
    hands the marker over, everything written before it has been handed over too."""
    import fcntl
    import os
    import struct
    import termios
    import threading
    import time

    deadline = time.monotonic() + limit_s
    for stream in (sys.stdout, sys.stderr):
        pipe = getattr(stream, "_fid", None)
        fd = getattr(stream, "_original_stdstream_fd", None)
        reader = getattr(stream, "watch_fd_thread", None)
        if not isinstance(pipe, int) or not isinstance(fd, int) or reader is None or not reader.is_alive():
            continue
        try:
            while struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"\0\0\0\0"))[0] and \
                    time.monotonic() < deadline:
                time.sleep(0.001)
        except OSError:
            continue
        seen = threading.Event()
        patched = stream.__dict__.get("write")  # an instance-level write someone installed, if any

        def write(text: str, stream: Any = stream, seen: threading.Event = seen, patched: Any = patched) -> Any:
            if SYNC_MARK in text:
                text = text.replace(SYNC_MARK, "")
                seen.set()
                if not text:
                    return 0
            return patched(text) if patched is not None else type(stream).write(stream, text)

        stream.write = write  # type: ignore[method-assign]
        try:
            os.write(fd, SYNC_MARK.encode())
            seen.wait(max(0.0, deadline - time.monotonic()))
        except OSError:
            pass
        finally:
            if patched is None:
                del stream.write
            else:
                stream.write = patched  # type: ignore[method-assign]


def flush_before_fork() -> None:
    """Send what stdout/stderr hold before the kernel forks (``multiprocessing``, ``os.fork``).
    ipykernel buffers output for up to 0.2 s; a child forked meanwhile inherits the buffer and
    sends it again when it exits, so a line printed once would show twice."""
    import os

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass

    os.register_at_fork(before=flush)


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


def bootstrap_code(max_images: int, max_pixels: int, max_chars: int) -> str:
    """The cell that sets a fresh kernel up, leaving no names behind but ``plt``."""
    from pathlib import Path

    source = Path(__file__).read_text()  # DROPPED_MIME and CUT_KEY travel with it
    call = f"setup({int(max_images)}, {int(max_pixels)}, {int(max_chars)})"
    return (f"exec(compile({source!r} + '\\n{call}', "
            f"'<deepeyes-sandbox-setup>', 'exec'), {{'__name__': '_deepeyes_setup'}})")
