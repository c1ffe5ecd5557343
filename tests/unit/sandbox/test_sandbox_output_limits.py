"""The host-side output limits at their edges: exactly at the limit nothing is cut (no
"0 characters omitted"), one over and exactly one is; streamed in pieces or whole; what the
kernel already cut; and each kind of iopub message a cell sends."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from deepeyes_cli.sandbox.kernel_init import CUT_KEY, DROPPED_MIME
from deepeyes_cli.sandbox.output import CellCapture, TextCapture, cut, png_size, strip_ansi, truncation_marker


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("limit", [1, 4, 7, 100, 101])
def test_text_exactly_at_the_limit_is_kept_whole_without_a_marker(limit: int) -> None:
    text = "".join(chr(97 + i % 26) for i in range(limit))
    assert cut(text, limit) == (text, False)
    streamed = TextCapture(limit)
    for ch in text:
        streamed.add(ch)
    assert streamed.value() == text and not streamed.truncated


@pytest.mark.parametrize("limit", [4, 8, 100, 101])
def test_one_character_over_the_limit_omits_exactly_one(limit: int) -> None:
    text = "".join(chr(97 + i % 26) for i in range(limit + 1))
    head, tail = limit * 3 // 4, limit - limit * 3 // 4
    value, truncated = cut(text, limit)
    assert truncated
    assert value == text[:head] + truncation_marker(1) + text[-tail:]


def test_head_is_three_quarters_and_tail_the_rest_however_the_text_arrives() -> None:
    text = "".join(f"{i:04d}" for i in range(1000))  # 4,000 characters
    expected = text[:75] + truncation_marker(3900) + text[-25:]
    assert cut(text, 100) == (expected, True)
    for size in (1, 3, 7, 60, 99, 1000):
        cap = TextCapture(100)
        for i in range(0, len(text), size):
            cap.add(text[i:i + size])
        assert cap.value() == expected, size
        assert cap.total == 4000 and cap.head_len == 75 and cap.tail_len >= 25


def test_a_zero_limit_keeps_nothing_and_counts_everything() -> None:
    assert cut("abc", 0) == (truncation_marker(3), True)
    assert cut("", 0) == ("", False)


def test_the_marker_says_how_many_characters_with_thousands_separators() -> None:
    assert truncation_marker(1234567) == "\n…[output truncated: 1,234,567 characters omitted]…\n"


def test_a_cut_the_kernel_made_counts_its_gap_and_keeps_both_sides() -> None:
    cap = TextCapture(40)
    cap.add_cut("HEAD" + "TAIL", [4, 1000])  # the kernel kept 4 + 4 characters of 1,008
    assert cap.truncated and cap.total == 1008
    assert cap.value() == "HEAD" + truncation_marker(1000) + "TAIL"
    # nothing it kept before the gap can be the tail, nothing after it the head
    cap = TextCapture(40)
    cap.add("x" * 5)
    cap.add_cut("ab", [0, 100])
    cap.add("yz")
    assert cap.value() == "xxxxx" + truncation_marker(100) + "abyz"


@pytest.mark.parametrize("bad", [None, [1], [1, 2, 3], ["1", 2], [-1, 5], [9, 5], [1, 0], [1, -3], "1,2"])
def test_a_cut_that_does_not_fit_the_text_is_ignored(bad: object) -> None:
    cap = TextCapture(100)
    cap.add_cut("abcdefgh", bad)
    assert cap.value() == "abcdefgh" and cap.total == 8 and not cap.truncated


def test_a_cut_at_the_very_end_of_the_text_is_accepted() -> None:
    cap = TextCapture(100)
    cap.add_cut("abc", [3, 700])
    assert cap.total == 703 and cap.truncated and cap.value() == "abc" + truncation_marker(700)


def test_png_size_reads_the_header_and_refuses_anything_else() -> None:
    data = _png(37, 11)
    assert png_size(data) == (37, 11)
    assert png_size(data[:24]) == (37, 11)  # the header alone is enough
    assert png_size(data[:23]) is None
    assert png_size(b"GIF89a" + data[6:]) is None
    assert png_size(data[:12] + b"IDAT" + data[16:]) is None
    assert png_size(b"") is None


def test_strip_ansi_removes_colour_and_cursor_codes_only() -> None:
    assert strip_ansi("\x1b[31mred\x1b[0m \x1b[2Kline\x1b[?25l\x1bM") == "red line"
    assert strip_ansi("a[31m b") == "a[31m b"


def _capture(**kw: int) -> CellCapture:
    return CellCapture(**{"max_chars": 100, "max_images": 2, "max_pixels": 10_000, **kw})


def test_streams_go_to_their_own_capture() -> None:
    cap = _capture()
    cap.add_message("stream", {"name": "stdout", "text": "out\n"})
    cap.add_message("stream", {"name": "stderr", "text": "\x1b[31merr\x1b[0m\n"})
    cap.add_message("stream", {"text": "no name is stdout\n"})
    fields = cap.text_fields()
    assert fields == {"stdout": "out\nno name is stdout\n", "stderr": "err\n", "result": None, "error": None,
                      "truncated": False}


def test_the_last_expression_and_displayed_text() -> None:
    cap = _capture()
    cap.add_message("execute_result", {"data": {"text/plain": "1"}})
    cap.add_message("execute_result", {"data": {"text/plain": "42"}})  # the last one counts
    cap.add_message("display_data", {"data": {"text/plain": "a table"}})
    cap.add_message("update_display_data", {"data": {"text/plain": "updated"}})
    cap.add_message("display_data", {"data": {}})
    cap.add_message("status", {"execution_state": "idle"})
    fields = cap.text_fields()
    assert fields["result"] == "42" and fields["stdout"] == "a table\nupdated\n" and not fields["truncated"]


def test_a_long_result_and_a_long_error_are_cut_and_say_so() -> None:
    cap = _capture(max_chars=20)
    cap.add_message("execute_result", {"data": {"text/plain": "r" * 21}})
    assert cap.text_fields()["truncated"] and cap.text_fields()["result"] == "r" * 15 + truncation_marker(1) + "r" * 5
    cap = _capture(max_chars=20)
    cap.add_message("execute_result", {"data": {"text/plain": "r" * 20}})
    cap.add_message("error", {"ename": "E", "evalue": "v", "traceback": ["\x1b[31m" + "e" * 15 + "\x1b[0m"]})
    fields = cap.text_fields()
    assert fields["result"] == "r" * 20 and fields["error"] == "e" * 15 and not fields["truncated"]
    cap.add_message("error", {"traceback": ["t" * 30]})
    assert cap.text_fields()["truncated"] and cap.text_fields()["error"].startswith("t" * 15 + "\n…")


def test_an_error_keeps_its_traceback_without_blank_lines_or_falls_back_to_its_name() -> None:
    cap = _capture(max_chars=1000)
    cap.add_message("error", {"ename": "ValueError", "evalue": "bad", "traceback": ["line 1\n\n  \nline 2", "", "x"]})
    assert cap.text_fields()["error"] == "line 1\nline 2\n\nx".replace("\n\n", "\n")
    cap.add_message("error", {"ename": "ValueError", "evalue": "bad", "traceback": []})
    assert cap.text_fields()["error"] == "ValueError: bad"
    cap.add_message("error", {})
    assert cap.text_fields()["error"] == "Error: "


def test_images_are_counted_checked_and_capped() -> None:
    cap = _capture(max_images=2, max_pixels=100 * 100)
    small = _png(10, 10)
    cap.add_message("display_data", {"data": {"image/png": base64.b64encode(small).decode(), "text/plain": "<Figure>"}})
    cap.add_message("display_data", {"data": {"image/png": small}})  # bytes, not base64
    cap.add_message("display_data", {"data": {"image/png": base64.b64encode(small).decode()}})  # one too many
    assert cap.images == [small, small] and cap.images_dropped == 1 and cap.notes == []
    assert cap.text_fields()["stdout"] == ""  # an image's text/plain is not printed


def test_bad_and_oversized_images_are_dropped_with_a_note() -> None:
    cap = _capture(max_images=5, max_pixels=100 * 100)
    cap.add_message("display_data", {"data": {"image/png": "not base64!"}})
    cap.add_message("display_data", {"data": {"image/png": base64.b64encode(b"GIF89a......").decode()}})
    cap.add_message("display_data", {"data": {"image/png": base64.b64encode(_png(106, 100)).decode()}})  # in slack
    cap.add_message("display_data", {"data": {"image/png": base64.b64encode(_png(111, 100)).decode()}})
    assert cap.notes == ["an image that was not valid base64 was dropped", "an image that was not a PNG was dropped",
                         "an image of 111x100 pixels was dropped (limit 10,000)"]
    assert len(cap.images) == 1 and cap.images_dropped == 1


def test_the_kernels_own_count_of_dropped_images_is_added() -> None:
    cap = _capture()
    cap.add_message("display_data", {"data": {DROPPED_MIME: {"dropped": 3}}})
    cap.add_message("display_data", {"data": {DROPPED_MIME: {"dropped": "2"}}})
    cap.add_message("display_data", {"data": {DROPPED_MIME: {"nothing": 1}}})  # malformed: ignored
    assert cap.images_dropped == 5 and cap.images == []


def test_a_text_the_kernel_cut_in_a_stream_or_a_result() -> None:
    cap = _capture(max_chars=1000)
    cap.add_message("stream", {"name": "stdout", "text": "abXY", CUT_KEY: [2, 5000]})
    cap.add_message("execute_result", {"data": {"text/plain": "12"}, CUT_KEY: [1, 2000]})
    fields = cap.text_fields()
    assert fields["stdout"] == "ab" + truncation_marker(5000) + "XY"
    assert fields["result"] == "1" + truncation_marker(2000) + "2" and fields["truncated"]


def test_memory_stays_bounded_however_long_the_stream() -> None:
    for limit in (0, 1, 9, 100):
        cap = TextCapture(limit)
        for i in range(2000):
            cap.add(f"{i:x}" * (i % 7 + 1))
        kept = sum(map(len, cap.head)) + sum(map(len, cap.tail))
        assert kept <= limit + 7 * 3, (limit, kept)  # the limit, plus at most one chunk of slack
        assert cap.tail_len == sum(map(len, cap.tail))


def test_counting_resumes_correctly_after_a_kernel_cut() -> None:
    cap = TextCapture(8)  # head 6, tail 2
    cap.add("123456")
    cap.skip(100)
    cap.add("a")
    cap.add("b")
    assert cap.value() == "123456" + truncation_marker(100) + "ab"


@pytest.mark.parametrize(("text", "gap", "limit", "expected"), [
    ("abcdef", [1, 0], 4, "abc" + truncation_marker(2) + "f"),  # a gap of nothing is no cut
    ("ab", [1, 1], 2, "a" + truncation_marker(1) + "b"),  # a gap of one character is one
])
def test_small_kernel_cuts(text: str, gap: list[int], limit: int, expected: str) -> None:
    cap = TextCapture(limit)
    cap.add_cut(text, gap)
    assert cap.value() == expected


def test_a_stream_without_text_adds_nothing() -> None:
    cap = _capture()
    cap.add_message("stream", {"name": "stdout"})
    assert cap.text_fields()["stdout"] == ""


@pytest.mark.parametrize("bad", [None, "x", [1]])
def test_a_malformed_dropped_count_is_ignored(bad: object) -> None:
    cap = _capture()
    cap.add_message("display_data", {"data": {DROPPED_MIME: {"dropped": bad}}})
    cap.add_message("display_data", {"data": {DROPPED_MIME: {"dropped": 1}}})
    assert cap.images_dropped == 1


def test_displayed_text_the_kernel_cut() -> None:
    cap = _capture(max_chars=1000)
    cap.add_message("display_data", {"data": {"text/plain": "abXY"}, CUT_KEY: [2, 5000]})
    assert cap.text_fields()["stdout"] == "ab" + truncation_marker(5000) + "XY\n"


def test_base64_with_stray_characters_is_refused_not_repaired() -> None:
    good = base64.b64encode(_png(4, 4)).decode()
    cap = _capture()
    cap.add_message("display_data", {"data": {"image/png": good[:8] + "!" + good[8:]}})
    assert cap.images == [] and cap.notes == ["an image that was not valid base64 was dropped"]


def test_every_oversized_image_is_counted() -> None:
    cap = _capture(max_pixels=100)
    for _ in range(3):
        cap.add_message("display_data", {"data": {"image/png": base64.b64encode(_png(50, 50)).decode()}})
    assert cap.images_dropped == 3 and len(cap.notes) == 3


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_one_long_stream_marks_the_cell_truncated(stream: str) -> None:
    cap = _capture(max_chars=10)
    cap.add_message("stream", {"name": stream, "text": "x" * 11})
    assert cap.text_fields()["truncated"]
