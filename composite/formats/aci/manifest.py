"""The ACI manifest grammar: parse a text file into a :class:`Manifest`, and serialize it back.

One line at a time, trimmed, classified in this order (docs/formats.md §2.1, docs/aci.md):

1. empty: skipped;  2. ``# ...``: a comment (whole lines only; there are no trailing comments);
3. ``<key> = <value>`` (spaces optional, ``key`` a name of letters, digits, ``_ . -``): an attribute;
4. ``<layer> <Z>``: exactly two numbers, starts a focal layer (integer layer, ascending finite Z);
5. ``<path> <Y> <X> [bare words] [(<quality words>)]``: an image; Y before X, non-negative integer
   level-0 offsets. Parsed from the right, so the path keeps its inner spaces; quality words (a
   trailing parenthesised group, and any non-integer words after X) are kept and ignored.

Images before the first layer line form layer 0 at Z 0. Files are CRLF or LF, UTF-8 (with or
without BOM) or else Latin-1. Every error names the file and line. Limits for untrusted input are
checked while parsing, before anything is opened: at most ``MAX_COMPONENTS`` image lines, offsets
that alone declare a canvas above ``MAX_CANVAS_PIXELS`` are refused, and so are huge files/lines.

``serialize`` writes the canonical form and refuses anything that would not parse back the same,
so ``parse(serialize(m)) == m`` for every manifest it accepts. Not kept: comments, the position
of attribute lines among image lines, the exact spacing of the original text.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import FormatError, LimitError, where
from ...limits import read_regular
from ...replace import atomic_output
from .table import Component as Component  # defined beside the table; imported from here
from .table import ComponentTable, IntArray, image_lines, mark_simple, other_lines

MAX_COMPONENTS = 1_000_000
MAX_CANVAS_PIXELS = 10**12
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_LINE_CHARS = 65_536

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ATTRIBUTE = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(.*)")
_WORD = re.compile(r"\S+")
_PLAIN_IMAGE = re.compile(r"(.*\S)\s+(\d+)\s+(\d+)")  # the common line: no signs, no quality words
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


@dataclass(frozen=True, slots=True)
class Layer:
    """A focal layer: its number, its Z offset and its images in file order."""

    number: int
    z: float
    components: Sequence[Component]  # a tuple, or a ComponentTable from the fast parser


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed ACI manifest: attributes in file order (repeats kept) and layers by ascending Z."""

    attributes: tuple[tuple[str, str], ...]
    layers: tuple[Layer, ...]
    source: str = field(default="<manifest>", compare=False)

    def attribute(self, key: str) -> str | None:
        """The value of ``key`` (case-insensitive; the last one wins), None when absent."""
        found = None
        for name, value in self.attributes:
            if name.lower() == key.lower():
                found = value
        return found

    @property
    def edgetrim(self) -> bool:
        """False when the manifest says ``edgetrim=no`` (or off/false/0); trimming is the default."""
        value = self.attribute("edgetrim")
        return value is None or value.strip().lower() not in _FALSE

    @property
    def component_count(self) -> int:
        return sum(len(layer.components) for layer in self.layers)

    def components(self) -> Iterator[tuple[Layer, Component]]:
        for layer in self.layers:
            for component in layer.components:
                yield layer, component


def read_manifest(path: str | Path) -> Manifest:
    """Parse the manifest file at ``path`` (size-limited before reading)."""
    path = Path(path)
    try:
        st = os.stat(path)
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except (OSError, ValueError):
        key = None
    if key is not None and _LAST and _LAST[0][0] == key:
        return _LAST[0][1]  # the same unchanged file again (a convert checks its sources, then opens)
    data = read_regular(path, limit=MAX_MANIFEST_BYTES, error=FormatError, what="manifest")
    manifest = parse_manifest(decode(data), source=str(path))
    if key is not None and stat.S_ISREG(st.st_mode):
        _LAST[:] = [(key, manifest)]
    return manifest


_LAST: list[tuple[tuple[object, ...], Manifest]] = []  # the last manifest read, by name and file state


def decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped) when the bytes are valid UTF-8, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Parse manifest text; ``source`` names the file in error messages."""
    fast = _only_plain_images(text, source)
    if fast is not None:
        return fast
    builder = _Builder(source)
    for number, raw in enumerate(text.split("\n"), start=1):
        if len(raw) > MAX_LINE_CHARS:
            raise LimitError(f"{where(source, number)}: line longer than {MAX_LINE_CHARS} characters")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        builder.add(line, number)
    return builder.finish()


def _only_plain_images(text: str, source: str) -> Manifest | None:
    """The manifest, when every image line is a plain ``<path> <Y> <X>`` line (the shape of
    huge generated manifests).

    One regular expression marks the simple image lines; the other lines (layer, attribute,
    comment, blank) are found in what is left and go through the line parser's own rules; the
    image lines between them go straight into the columns of a :class:`~.table.ComponentTable`
    (no Python object per line): a million lines parse in about a second. None (parse line by
    line) for anything else: an image line with quality words or signs, unusual whitespace,
    non-ASCII text, NUL, or a line at a limit (the line-by-line parser then reports it).
    """
    if not text.isascii() or any(c in text for c in "\x00\x01\x02\x0b\x0c\x1c\x1d\x1e\x1f"):
        return None
    body = text[:-1] if text.endswith("\n") else text
    if not body:
        return None
    marked = mark_simple(body)  # image lines -> "\x01", comments and blank lines -> "\x02"
    breaks = np.flatnonzero(np.frombuffer(body.encode("ascii"), np.uint8) == 10)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(body)]))
    builder = _Builder(source)
    index: dict[str, int] = {}
    columns: list[list[tuple[IntArray, ...]]] = []  # per layer of the builder: its runs of image lines
    position, line = 0, 1  # in ``marked``; line numbers are the same in both texts
    for start, end in [*other_lines(marked), (len(marked) + 1, -1)]:
        lines = marked.count("\n", position, start) + (start > len(marked)) if start > position else 0
        if start > position:  # lines ``line`` .. ``line + lines - 1`` between two layer/attribute lines
            run = image_lines(body, marked, position, start, line, lines, starts, ends, index)
            if run is None:
                return None
            if len(run[0]):
                builder.start_implicit()
                columns += [[] for _ in range(len(builder.layers) - len(columns))]
                columns[-1].append(run)
        line += lines
        if end < 0:
            break
        text_line = body[int(starts[line - 1]) : int(ends[line - 1])]
        if len(text_line) > MAX_LINE_CHARS:
            return None
        builder.add(text_line.strip(), line)
        columns += [[] for _ in range(len(builder.layers) - len(columns))]
        position, line = end + 1, line + 1
    paths = list(index)
    if any(len(p) > MAX_LINE_CHARS for p in paths):
        return None
    tables = [ComponentTable.of_runs(paths, runs) for runs in columns]
    images = sum(len(t) for t in tables)
    if images > MAX_COMPONENTS:
        numbers = np.sort(np.concatenate([t.lines for t in tables]))
        raise LimitError(
            f"{where(source, int(numbers[MAX_COMPONENTS]))}: more than {MAX_COMPONENTS} images in one manifest"
        )
    max_x = max((int(t.xs.max()) for t in tables if len(t)), default=0)
    max_y = max((int(t.ys.max()) for t in tables if len(t)), default=0)
    if max_x > MAX_CANVAS_PIXELS or max_y > MAX_CANVAS_PIXELS or (max_x + 1) * (max_y + 1) > MAX_CANVAS_PIXELS:
        return None
    layers = tuple(Layer(n, z, table) for (n, z, _), table in zip(builder.layers, tables, strict=True))
    return Manifest(tuple(builder.attributes), layers, source=source)


class _Builder:
    """Accumulates layers while checking order and the limits for untrusted input."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.attributes: list[tuple[str, str]] = []
        self.layers: list[tuple[int, float, list[Component]]] = []
        self.implicit = False
        self.numbers: set[int] = set()
        self.count = 0
        self.max_x = 0
        self.max_y = 0
        self.paths: dict[str, str] = {}  # one string object per distinct path: 10^6 lines, few files

    def error(self, line: int, message: str) -> FormatError:
        return FormatError(f"{where(self.source, line)}: {message}")

    def add(self, line: str, number: int) -> None:
        attribute = _ATTRIBUTE.fullmatch(line) if "=" in line else None
        if attribute:
            key, value = attribute.group(1), attribute.group(2).strip()
            if key.lower() == "edgetrim" and value.lower() not in _TRUE | _FALSE:
                raise self.error(number, f"edgetrim must be yes or no, got {value!r}")
            self.attributes.append((key, value))
            return
        plain = _PLAIN_IMAGE.fullmatch(line)  # three words or more: never a layer line
        if plain:
            path = self.paths.setdefault(plain.group(1), plain.group(1))
            self.add_component(_checked(path, int(plain.group(2)), int(plain.group(3)), (), self.source, number))
            return
        words = line.split()
        if len(words) == 2 and all(_NUMBER.fullmatch(w) for w in words):
            self.add_layer(words[0], words[1], number)
            return
        self.add_component(parse_image_line(line, source=self.source, line=number))

    def start_implicit(self) -> None:
        """Images before any layer line are layer 0 at Z 0."""
        if not self.layers:
            self.layers.append((0, 0.0, []))
            self.numbers.add(0)
            self.implicit = True

    def add_layer(self, layer_word: str, z_word: str, number: int) -> None:
        if not _INT.fullmatch(layer_word) or int(layer_word) < 0:
            raise self.error(number, f"layer number must be a non-negative integer, got {layer_word!r}")
        layer, z = int(layer_word), float(z_word)
        if not math.isfinite(z):
            raise self.error(number, f"layer Z offset must be finite, got {z_word!r}")
        if self.implicit and len(self.layers) == 1 and (layer, z) == (0, 0.0):
            self.implicit = False  # "0 0" after the first images just names the layer they are in
            return
        if self.layers:
            previous_z = self.layers[-1][1]
            if z <= previous_z:
                raise self.error(number, f"layers must come in ascending Z: Z {z_word} after Z {previous_z:g}")
            if layer in self.numbers:
                raise self.error(number, f"layer {layer} is declared twice")
        self.implicit = False
        self.layers.append((layer, z, []))
        self.numbers.add(layer)

    def add_component(self, component: Component) -> None:
        self.count += 1
        if self.count > MAX_COMPONENTS:
            raise LimitError(f"{where(self.source, component.line)}: more than {MAX_COMPONENTS} images in one manifest")
        if component.x > self.max_x or component.y > self.max_y:
            self.max_x = max(self.max_x, component.x)
            self.max_y = max(self.max_y, component.y)
            self.check_canvas(component.line)
        self.start_implicit()
        path = self.paths.setdefault(component.path, component.path)
        if path is not component.path:
            component = Component(path, component.y, component.x, component.quality, component.line)
        self.layers[-1][2].append(component)

    def check_canvas(self, line: int) -> None:
        if (self.max_x + 1) * (self.max_y + 1) > MAX_CANVAS_PIXELS:
            raise LimitError(
                f"{where(self.source, line)}: offsets declare a canvas of at least "
                f"{self.max_x + 1} x {self.max_y + 1} px, more than the {MAX_CANVAS_PIXELS:,} px allowed"
            )

    def finish(self) -> Manifest:
        layers = tuple(Layer(n, z, tuple(items)) for n, z, items in self.layers)
        return Manifest(tuple(self.attributes), layers, source=self.source)


def parse_image_line(text: str, *, source: str = "<manifest>", line: int = 0) -> Component:
    """Parse one trimmed image line ``<path> <Y> <X> [quality...]``, reading from the right."""
    plain = _PLAIN_IMAGE.fullmatch(text)
    if plain:
        return _checked(plain.group(1), int(plain.group(2)), int(plain.group(3)), (), source, line)
    body = text
    group: tuple[str, ...] = ()
    if body.endswith(")"):
        start = body.rfind("(")
        if start > 0 and body[start - 1].isspace():
            group = tuple(body[start + 1 : -1].split())
            body = body[:start].rstrip()
    words = list(_WORD.finditer(body))
    end = len(words)
    while end > 0 and not _INT.fullmatch(words[end - 1].group()):
        end -= 1  # bare quality words after X
    if end < 3:
        raise FormatError(
            f"{where(source, line)}: not an attribute, layer or image line "
            f"(expected '<path> <Y-offset> <X-offset>', got {text[:80]!r})"
        )
    y_word, x_word = words[end - 2].group(), words[end - 1].group()
    if not _INT.fullmatch(y_word):
        raise FormatError(
            f"{where(source, line)}: image line needs integer offsets '<path> <Y-offset> <X-offset>', got Y {y_word!r}"
        )
    path = body[: words[end - 2].start()].rstrip()
    quality = tuple(w.group() for w in words[end:]) + group
    return _checked(path, int(y_word), int(x_word), quality, source, line)


def _checked(path: str, y: int, x: int, quality: tuple[str, ...], source: str, line: int) -> Component:
    if y < 0 or x < 0:
        raise FormatError(f"{where(source, line)}: offsets must not be negative, got Y {y}, X {x}")
    if x > MAX_CANVAS_PIXELS or y > MAX_CANVAS_PIXELS:
        raise LimitError(f"{where(source, line)}: offset beyond any allowed canvas (Y {y}, X {x})")
    if "\x00" in path:
        raise FormatError(f"{where(source, line)}: image path contains a NUL character")
    return Component(path, y, x, quality, line)


def _format_z(z: float) -> str:
    return str(int(z)) if z.is_integer() else repr(z)


def _component_line(component: Component) -> str:
    line = f"{component.path} {component.y} {component.x}"
    if component.quality:
        line += " (" + " ".join(component.quality) + ")"
    return line


def serialize(manifest: Manifest, *, header: str | None = None) -> str:
    """The canonical text of ``manifest`` (LF line ends); ``header`` becomes leading comments.

    Raises ValueError for content no manifest can express (a path with a line break, a path
    that would read back as an attribute or comment, quality words with spaces or parentheses).
    """
    lines = [f"# {h}".rstrip() for h in header.splitlines()] if header else []
    for key, value in manifest.attributes:
        line = f"{key}={value}"
        match = _ATTRIBUTE.fullmatch(line)
        bad_trim = key.lower() == "edgetrim" and value.lower() not in _TRUE | _FALSE
        if not match or match.group(1) != key or match.group(2).strip() != value or "\n" in line or bad_trim:
            raise ValueError(f"attribute {key!r}={value!r} cannot be written in an ACI manifest")
        lines.append(line)
    implicit = len(manifest.layers) == 1 and manifest.layers[0].number == 0 and manifest.layers[0].z == 0
    for layer in manifest.layers:
        if not (implicit and layer.components):
            lines.append(f"{layer.number} {_format_z(layer.z)}")
        for component in layer.components:
            line = _component_line(component)
            if not _reads_back(line, component):
                raise ValueError(f"image {component.path!r} cannot be written in an ACI manifest line")
            lines.append(line)
    return "\n".join(lines) + "\n"


def _reads_back(line: str, component: Component) -> bool:
    if "\n" in line or "\r" in line or line != line.strip() or line.startswith("#"):
        return False
    if _ATTRIBUTE.fullmatch(line):
        return False
    try:
        return parse_image_line(line) == component
    except FormatError:
        return False


def write_manifest(path: str | Path, manifest: Manifest, *, header: str | None = None) -> Path:
    """Write ``manifest`` to ``path`` atomically (a temporary name, then renamed)."""
    path = Path(path)
    text = serialize(manifest, header=header)
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return path
