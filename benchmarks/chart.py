"""A tiny PNG line chart on log-log axes, stdlib only (``zlib`` + ``struct``).

The benchmarks need one kind of picture (throughput against a size, several series,
a few reference lines) and plotting libraries are not dependencies, so this draws
into an RGB pixel buffer with a built-in 5x7 pixel font (capitals, digits and a little
punctuation; text is upper-cased) and writes the PNG itself.

Example::

    line_chart(
        Path("out.png"),
        [Series("aiostream", [(1e3, 2e5), (1e5, 4e5)], BLUE)],
        title="Fanout",
        x_label="followers",
        y_label="feed writes / s",
    )
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
LIGHT: Color = (230, 230, 230)
MID: Color = (190, 190, 190)
BLUE: Color = (31, 100, 180)
ORANGE: Color = (230, 120, 20)
GREEN: Color = (40, 150, 60)
RED: Color = (200, 40, 40)

# 5x7 glyphs, row by row from the top: two hex digits per row, bit 4 is the left column.
_FONT = {
    " ": "00000000000000",
    "0": "0E11131519110E",
    "1": "040C040404040E",
    "2": "0E11010204081F",
    "3": "1F02040201110E",
    "4": "02060A121F0202",
    "5": "1F101E0101110E",
    "6": "0608101E11110E",
    "7": "1F010204080808",
    "8": "0E11110E11110E",
    "9": "0E11110F01020C",
    "A": "0E11111F111111",
    "B": "1E11111E11111E",
    "C": "0E11101010110E",
    "D": "1C12111111121C",
    "E": "1F10101E10101F",
    "F": "1F10101E101010",
    "G": "0E11101711110F",
    "H": "1111111F111111",
    "I": "0E04040404040E",
    "J": "0702020202120C",
    "K": "11121418141211",
    "L": "1010101010101F",
    "M": "111B1515111111",
    "N": "11111915131111",
    "O": "0E11111111110E",
    "P": "1E11111E101010",
    "Q": "0E11111115120D",
    "R": "1E11111E141211",
    "S": "0F10100E01011E",
    "T": "1F040404040404",
    "U": "1111111111110E",
    "V": "11111111110A04",
    "W": "1111111515150A",
    "X": "11110A040A1111",
    "Y": "1111110A040404",
    "Z": "1F01020408101F",
    ".": "00000000000C0C",
    ",": "000000000C0408",
    ":": "000C0C000C0C00",
    "/": "00010204081000",
    "-": "0000001F000000",
    "_": "0000000000001F",
    "+": "0004041F040400",
    "=": "00001F001F0000",
    "(": "02040808080402",
    ")": "08040202020408",
    "%": "18190204081303",
    ">": "08040201020408",
    "<": "02040810080402",
}
_GLYPHS = {ch: [int(rows[i : i + 2], 16) for i in range(0, 14, 2)] for ch, rows in _FONT.items()}


@dataclass
class Series:
    """One line: ``points`` are ``(x, y)``, both positive (the axes are logarithmic)."""

    label: str
    points: Sequence[tuple[float, float]]
    color: Color


@dataclass
class Reference:
    """A dashed horizontal line at ``y`` (a ceiling or a target)."""

    label: str
    y: float
    color: Color


class Canvas:
    """An RGB pixel buffer with just enough drawing for a chart."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, color: Color, size: int = 1) -> None:
        """A ``size`` x ``size`` square centred on ``(x, y)`` (clipped to the canvas)."""
        half = size // 2
        for yy in range(max(0, y - half), min(self.height, y - half + size)):
            row = yy * self.width
            for xx in range(max(0, x - half), min(self.width, x - half + size)):
                i = 3 * (row + xx)
                self.pixels[i : i + 3] = bytes(color)

    def line(
        self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1, dash: int = 0
    ) -> None:
        """A straight line (Bresenham), ``width`` pixels thick, dashed every ``dash`` pixels."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, step = dx + dy, 0
        while True:
            if not dash or (step // dash) % 2 == 0:
                self.dot(x0, y0, color, width)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy
            step += 1

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 2) -> int:
        """Write ``text`` with its top-left corner at ``(x, y)``; returns the width drawn.

        Raises:
            ValueError: a character the built-in font lacks.
        """
        for n, ch in enumerate(text.upper()):
            glyph = _GLYPHS.get(ch)
            if glyph is None:
                raise ValueError(f"no glyph for {ch!r} in {text!r}")
            for row, bits in enumerate(glyph):
                for col in range(5):
                    if bits & (0x10 >> col):
                        for sy in range(scale):
                            for sx in range(scale):
                                px = x + n * 6 * scale + col * scale + sx
                                py = y + row * scale + sy
                                if 0 <= px < self.width and 0 <= py < self.height:
                                    i = 3 * (py * self.width + px)
                                    self.pixels[i : i + 3] = bytes(color)
        return text_width(text, scale)

    def png(self) -> bytes:
        """The buffer as a PNG file (8-bit RGB, no filtering, zlib level 9)."""
        stride = 3 * self.width
        raw = b"".join(
            b"\0" + self.pixels[y * stride : (y + 1) * stride] for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    """Width in pixels of ``text`` (6 font columns per character, the last one blank)."""
    return max(0, len(text) * 6 * scale - scale)


def si(value: float) -> str:
    """``1500`` -> ``1.5K``, ``2000000`` -> ``2M``: short labels for ticks and points."""
    for factor, suffix in ((1e6, "M"), (1e3, "K")):
        if value >= factor:
            scaled = value / factor
            digits = 0 if scaled >= 10 or scaled == int(scaled) else 1
            return f"{scaled:.{digits}f}{suffix}"
    return f"{value:.0f}"


def line_chart(
    path: Path,
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    references: Sequence[Reference] = (),
    width: int = 960,
    height: int = 680,
) -> None:
    """Draw ``series`` on log-log axes (decades, gridlines, labelled points) to ``path``.

    The legend goes under the plot, one line per series and reference, so it never
    hides a point.
    """
    canvas = Canvas(width, height)
    rows = len(series) + len(references)
    left, right, top, bottom = 90, width - 30, 70, height - 80 - 22 * rows
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [r.y for r in references]
    # Half a decade of room on each side of x; whole decades on y, so gridlines land on 10^k.
    x_lo, x_hi = math.log10(min(xs)) - 0.25, math.log10(max(xs)) + 0.25
    y_lo, y_hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)) + 0.15)

    def px(x: float) -> int:
        return round(left + (math.log10(x) - x_lo) / (x_hi - x_lo) * (right - left))

    def py(y: float) -> int:
        return round(bottom - (math.log10(y) - y_lo) / (y_hi - y_lo) * (bottom - top))

    for decade in range(y_lo, y_hi + 1):
        major = 10.0**decade
        if decade < y_hi:
            for k in range(2, 10):
                canvas.line(left, py(k * major), right, py(k * major), LIGHT)
        canvas.line(left, py(major), right, py(major), MID)
        label = si(major)
        canvas.text(left - 10 - text_width(label), py(major) - 7, label, BLACK)
    for x in sorted(set(xs)):
        canvas.line(px(x), top, px(x), bottom, LIGHT)
        label = si(x)
        canvas.text(px(x) - text_width(label) // 2, bottom + 10, label, BLACK)
    canvas.line(left, bottom, right, bottom, BLACK, 2)
    canvas.line(left, top, left, bottom, BLACK, 2)

    canvas.text((width - text_width(title)) // 2, 20, title, BLACK)
    canvas.text((left + right - text_width(x_label)) // 2, bottom + 36, x_label, BLACK)
    canvas.text(left, top - 22, y_label, BLACK)

    for ref in references:
        canvas.line(left, py(ref.y), right, py(ref.y), ref.color, 2, dash=8)
    for n, s in enumerate(series):
        points = sorted(s.points)
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            canvas.line(px(x0), py(y0), px(x1), py(y1), s.color, 3)
        for x, y in points:
            canvas.dot(px(x), py(y), s.color, 9)
            # Alternate above / below so neighbouring series keep their labels apart.
            canvas.text(px(x) + 8, py(y) + (6 if n % 2 else -20), si(y), s.color)

    legend_y = bottom + 66
    for s in series:
        canvas.line(left + 14, legend_y + 7, left + 44, legend_y + 7, s.color, 3)
        canvas.dot(left + 29, legend_y + 7, s.color, 9)
        canvas.text(left + 54, legend_y, s.label, BLACK)
        legend_y += 22
    for ref in references:
        canvas.line(left + 14, legend_y + 7, left + 44, legend_y + 7, ref.color, 2, dash=8)
        canvas.text(left + 54, legend_y, f"{ref.label}: {si(ref.y)}", BLACK)
        legend_y += 22
    path.write_bytes(canvas.png())
