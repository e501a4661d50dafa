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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import FormatError, LimitError, where
from ...limits import read_regular
from ...replace import atomic_output

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
class Component:
    """One image line: ``path`` as written (relative to the manifest), level-0 offsets."""

    path: str
    y: int
    x: int
    quality: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Layer:
    """A focal layer: its number, its Z offset and its images in file order."""

    number: int
    z: float
    components: tuple[Component, ...]


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
    data = read_regular(path, limit=MAX_MANIFEST_BYTES, error=FormatError, what="manifest")
    return parse_manifest(decode(data), source=str(path))


def decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped) when the bytes are valid UTF-8, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Parse manifest text; ``source`` names the file in error messages."""
    builder = _Builder(source)
    for number, raw in enumerate(text.split("\n"), start=1):
        if len(raw) > MAX_LINE_CHARS:
            raise LimitError(f"{where(source, number)}: line longer than {MAX_LINE_CHARS} characters")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        builder.add(line, number)
    return builder.finish()


class _Builder:
    """Accumulates layers while checking order and the limits for untrusted input."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.attributes: list[tuple[str, str]] = []
        self.layers: list[tuple[int, float, list[Component]]] = []
        self.implicit = False
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
            if any(layer == n for n, _, _ in self.layers):
                raise self.error(number, f"layer {layer} is declared twice")
        self.implicit = False
        self.layers.append((layer, z, []))

    def add_component(self, component: Component) -> None:
        self.count += 1
        if self.count > MAX_COMPONENTS:
            raise LimitError(f"{where(self.source, component.line)}: more than {MAX_COMPONENTS} images in one manifest")
        if component.x > self.max_x or component.y > self.max_y:
            self.max_x = max(self.max_x, component.x)
            self.max_y = max(self.max_y, component.y)
            self.check_canvas(component.line)
        if not self.layers:
            self.layers.append((0, 0.0, []))
            self.implicit = True
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
