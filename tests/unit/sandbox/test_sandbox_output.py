"""Host-side limits on what a cell returns, and the wire format both ways."""

from __future__ import annotations

import base64
import io

from PIL import Image

from deepeyes_cli.sandbox.base import CellResult
from deepeyes_cli.sandbox.client import base_url
from deepeyes_cli.sandbox.limits import Limits, join_cgroup_script, prlimit_argv
from deepeyes_cli.sandbox.output import CellCapture, TextCapture, png_size, strip_ansi
from deepeyes_cli.sandbox.server import exposure_warning
from deepeyes_cli.sandbox.wire import result_from_wire, result_to_wire


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_text_capture_keeps_head_and_tail_of_a_long_stream() -> None:
    cap = TextCapture(100)
    for i in range(10_000):
        cap.add(f"{i:05d}\n")
    value = cap.value()
    assert cap.truncated and value.startswith("00000\n") and value.endswith("09999\n")
    assert "characters omitted" in value and len(value) < 100 + 60
    omitted = int(value.split("output truncated: ")[1].split(" ")[0].replace(",", ""))
    assert omitted == 60_000 - 100
    small = TextCapture(100)
    small.add("hello")
    small.add(" world")
    assert small.value() == "hello world" and not small.truncated


def test_a_text_the_kernel_cut_is_counted_as_if_whole() -> None:
    whole = "".join(f"{i:07d}\n" for i in range(20_000))  # 160,000 characters
    kept, gap = whole[:500] + whole[-500:], [500, len(whole) - 1000]  # what the kernel sends
    direct, cut_there = TextCapture(400), TextCapture(400)
    direct.add("start\n" + whole)
    cut_there.add("start\n")
    cut_there.add_cut(kept, gap)
    assert cut_there.value() == direct.value() and cut_there.truncated
    cut_there.add_cut("tail", [9, 3])  # a cut that does not fit its text: taken as plain text
    assert cut_there.value().endswith("tail")
    cap = CellCapture(max_chars=100, max_images=1, max_pixels=100)
    cap.add_message("execute_result", {"data": {"text/plain": "a" * 100 + "b" * 100}, "deepeyes_cut": [100, 5000]})
    assert cap.text_fields()["truncated"] and "5,100 characters omitted" in cap.text_fields()["result"]


def test_cell_capture_caps_count_and_pixels_and_rejects_non_png() -> None:
    cap = CellCapture(max_chars=1000, max_images=2, max_pixels=100 * 100)
    for data in [_png(10, 10), b"GIF89a....", _png(200, 200), _png(5, 5), _png(6, 6)]:
        cap.add_message("display_data", {"data": {"image/png": base64.b64encode(data).decode()}})
    assert [png_size(p) for p in cap.images] == [(10, 10), (5, 5)]
    assert cap.images_dropped == 2  # one over the pixel cap, one over the count
    assert any("200x200" in n for n in cap.notes) and any("not a PNG" in n for n in cap.notes)
    cap.add_message("stream", {"name": "stderr", "text": "\x1b[31mred\x1b[0m"})
    cap.add_message("display_data", {"data": {"text/plain": "a table"}})
    cap.add_message("execute_result", {"data": {"text/plain": "42"}})
    cap.add_message("error", {"traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m", "", "division by zero"]})
    fields = cap.text_fields()
    assert fields["stderr"] == "red" and fields["stdout"] == "a table\n" and fields["result"] == "42"
    assert fields["error"] == "ZeroDivisionError\ndivision by zero"
    assert strip_ansi("\x1b[1;32mok\x1b[0m") == "ok"


def test_wire_round_trip_and_the_original_servers_answers() -> None:
    result = CellResult(status="error", stdout="out", stderr="warn\n", result="7", error="Traceback: boom",
                        images=[_png(3, 2)], execution_time=0.25, truncated=True, images_dropped=1,
                        restarted=True, notes=["n"])
    wire = result_to_wire(result)
    assert wire["status"] == "success" and wire["output"]["stderr"] == "warn\nTraceback: boom"
    assert base64.b64decode(wire["output"]["images"][0]) == result.images[0]
    assert result_from_wire(wire) == result
    original = {"status": "success", "execution_time": 0.1, "output": {
        "result": "", "stdout": "", "stderr": "TimeOutError: code execution timed out", "images": [],
        "debug_info": {"msg": ""}}}
    assert result_from_wire(original).status == "timeout"
    v2 = {"status": "success", "output": {"stdout": "1\n", "stderr": "",
                                          "images": ["data:image/png;base64," + base64.b64encode(_png(4, 4)).decode()]}}
    assert png_size(result_from_wire(v2).images[0]) == (4, 4)
    failed = result_from_wire({"output": "Error: No code provided", "status": "error", "execution_time": 0.0})
    assert failed.status == "error" and failed.error == "Error: No code provided"


def test_exposure_warning_and_urls() -> None:
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "tok") is None
    assert "without a token" in (exposure_warning("0.0.0.0", None) or "")
    assert base_url("http://h:8000/jupyter_sandbox/") == ("http://h:8000", None)
    assert base_url("http://h:8000/") == ("http://h:8000", None)
    assert base_url("https://h/sbx/jupyter_sandbox?token=t0k") == ("https://h/sbx", "t0k")


def test_limits_become_prlimit_flags_and_cgroup_joins() -> None:
    limits = Limits(memory_bytes=512 << 20, cpus=1.0, cpu_time_s=60, file_size_bytes=8 << 20, open_files=64,
                    max_processes=32)
    argv = prlimit_argv(limits, address_space=True)
    assert argv[0] == "prlimit" and argv[-1] == "--"
    assert {"--as=536870912", "--nproc=32", "--nofile=64", "--fsize=8388608", "--cpu=60", "--core=0"} <= set(argv)
    assert not any(a.startswith("--as") for a in prlimit_argv(limits, address_space=False))
    assert join_cgroup_script(None) == []
