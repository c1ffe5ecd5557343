"""Images arriving in a trajectory (user files, tool outputs), the code tool's framing over
an in-process session, and the original's indentation fixer."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from agent_test_helpers import InProcessSession
from PIL import Image

from deepeyes_cli.errors import InputError
from deepeyes_cli.protocol.images import load_image, normalize_image
from deepeyes_cli.protocol.indentation import fix_indentation
from deepeyes_cli.tools.base import ToolContext
from deepeyes_cli.tools.code import CodeTool

DATA = Path(__file__).resolve().parents[2] / "data"


def test_normalize_image() -> None:
    big = normalize_image(Image.new("RGB", (4000, 3000)), 1_000_000)
    assert big.width * big.height <= 1_000_000 and abs(big.width / big.height - 4 / 3) < 0.01
    tiny = normalize_image(Image.new("L", (10, 20)), 1_000_000)
    assert tiny.mode == "RGB" and min(tiny.size) == 32
    wide = normalize_image(Image.new("RGB", (9000, 10)), 10**8)
    assert max(wide.size) / min(wide.size) <= 200 and min(wide.size) >= 32
    same = Image.new("RGB", (64, 64))
    assert normalize_image(same, 10**6) is same


def test_load_the_test_photo() -> None:
    img = load_image(DATA / "street_sign.jpg", 10**8)
    assert img.size == (640, 480) and img.mode == "RGB"
    small = load_image(DATA / "street_sign.jpg", 50_176)
    assert small.width * small.height <= 50_176 and small.width > small.height


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels but holds almost no data."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def test_bad_image_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.jpg", 10**6)
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path, 10**6)
    (tmp_path / "notes.txt").write_text("hello, not an image")
    with pytest.raises(InputError, match="not an image file"):
        load_image(tmp_path / "notes.txt", 10**6)
    data = (DATA / "street_sign.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.jpg", 10**6)
    (tmp_path / "bomb.png").write_bytes(_png_header(50_000, 50_000))  # 2.5 GP claimed, never decoded
    with pytest.raises(InputError, match="too large to decode safely"):
        load_image(tmp_path / "bomb.png", 10**6)


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(buf, format="JPEG", quality=50)
    (tmp_path / "huge.jpg").write_bytes(buf.getvalue())
    img = load_image(tmp_path / "huge.jpg", 200_704)
    assert img.width * img.height <= 200_704 and img.getpixel((5, 5))[2] > 150


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_huge_png_of_any_mode_is_shrunk_before_its_rgb_copy(tmp_path: Path, mode: str) -> None:
    base = Image.new("RGB", (3000, 2000), (200, 30, 30)).convert(mode)
    base.save(tmp_path / "big.png")
    img = load_image(tmp_path / "big.png", 200_704)
    assert img.mode == "RGB" and img.width * img.height <= 200_704 and abs(img.width / img.height - 1.5) < 0.02
    want = base.convert("RGB").resize(img.size, Image.Resampling.BOX).getpixel((img.width // 2, img.height // 2))
    got = img.getpixel((img.width // 2, img.height // 2))
    assert all(abs(a - b) <= 8 for a, b in zip(got, want, strict=True)), (got, want)  # same colours, dithering aside


def test_fix_indentation_replicates_the_side_effect() -> None:
    code = "for i in range(3):\n    x = i\nprint('done')\n"
    fixed = fix_indentation(code)
    assert "    print('done')" in fixed  # pulled into the loop, as the original does
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(fixed, {})
    assert out.getvalue() == "done\ndone\ndone\n"
    ok = fix_indentation("try:\n  a = 1\nexcept Exception:\n  a = 2\nelse:\n  a = 3\n")
    assert ok.splitlines() == ["try:", "    a = 1", "except Exception:", "    a = 2", "else:", "    a = 3"]
    # the original's plain prefix test: a name that merely starts with a keyword dedents as well
    quirk = fix_indentation("if True:\n    x = 1\n\n    elsewhere = 2\n    y = 3\n")
    assert quirk.splitlines() == ["if True:", "    x = 1", "elsewhere = 2", "y = 3"]


def test_code_tool_frames_cells_in_the_original_template() -> None:
    session = InProcessSession([Image.new("RGB", (64, 48), "red")])

    async def open_session() -> InProcessSession:
        return session

    ctx = ToolContext("t", open_session=open_session)  # type: ignore[arg-type]
    tool = CodeTool(5)
    r = asyncio.run(tool({"code": "print(image_1.size)\nshow(image_1.crop((0, 0, 10, 40)))"}, ctx))
    assert r.ok and len(r.images) == 1 and min(r.images[0].size) >= 32
    assert r.text == ("Code execution result:\nstdout:\n```\n(64, 48)\n\n```\n\nstderr:\n```\n\n```\n\n"
                      "Images:\n<image>")
    r = asyncio.run(tool({"code": "1 / 0"}, ctx))
    assert r.ok and "stderr:\n```\nZeroDivisionError: division by zero\n```" in r.text
    r = asyncio.run(tool({"code": "for i in range(2):\n    pass\nprint(i)"}, ctx))
    assert "stdout:\n```\n1\n\n```" in r.text
    r = asyncio.run(CodeTool(5, fix_indentation=True)({"code": "for i in range(2):\n    pass\nprint(i)"}, ctx))
    assert "stdout:\n```\n0\n1\n\n```" in r.text  # the fixer's side effect, when asked for
    r = asyncio.run(tool({"code": "x"}, ToolContext("t")))
    assert not r.ok and r.metadata.get("fatal") and "no code sandbox" in (r.error or "")
