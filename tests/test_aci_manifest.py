"""ACI manifest grammar: every line kind, encodings, errors with file:line, limits, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composite.errors import FormatError, LimitError
from composite.formats.aci import manifest as mf
from composite.formats.aci.manifest import Component, Layer, Manifest, parse_manifest, read_manifest, serialize

EXAMPLE = """\
# a comment, then attributes with and without spaces
edgetrim = no
Title=Two slides side by side
madison.svs 0 0
katherine 2.svs 0 58984 (q=70 jpeg)
"""


def test_example_lines_classified() -> None:
    m = parse_manifest(EXAMPLE, source="paul.aci")
    assert m.attributes == (("edgetrim", "no"), ("Title", "Two slides side by side"))
    assert not m.edgetrim
    assert [(layer.number, layer.z) for layer in m.layers] == [(0, 0.0)]
    assert m.layers[0].components == (
        Component("madison.svs", 0, 0),
        Component("katherine 2.svs", 0, 58984, ("q=70", "jpeg")),
    )
    assert [c.line for _, c in m.components()] == [4, 5]


def test_y_comes_before_x() -> None:
    (component,) = parse_manifest("a.svs 10 20\n").layers[0].components
    assert (component.y, component.x) == (10, 20)


def test_paths_keep_inner_spaces_and_bare_quality_words() -> None:
    m = parse_manifest("dir with  spaces/scan (1).svs   7 8 high q=80\n")
    assert m.layers[0].components == (Component("dir with  spaces/scan (1).svs", 7, 8, ("high", "q=80")),)


def test_layers_and_implicit_layer_zero() -> None:
    text = "a.svs 0 0\n1 2.5\nb.svs 0 0\n2 5\nc.svs 1 1\n"
    m = parse_manifest(text)
    assert [(layer.number, layer.z, len(layer.components)) for layer in m.layers] == [(0, 0, 1), (1, 2.5, 1), (2, 5, 1)]
    # "0 0" after the first images names the layer they are already in
    again = parse_manifest("a.svs 0 0\n0 0\nb.svs 5 5\n")
    assert len(again.layers) == 1 and len(again.layers[0].components) == 2


def test_crlf_bom_utf8_and_latin1(tmp_path: Path) -> None:
    utf8 = tmp_path / "u.aci"
    utf8.write_bytes("\ufeffnote=caf\u00e9\r\ncaf\u00e9 \u00fc.svs 1 2\r\n".encode())
    latin = tmp_path / "l.aci"
    latin.write_bytes("note=caf\u00e9\r\ncaf\u00e9 \u00fc.svs 1 2\r\n".encode("latin-1"))
    for path in (utf8, latin):
        m = read_manifest(path)
        assert m.attributes == (("note", "caf\u00e9"),)
        assert m.layers[0].components == (Component("caf\u00e9 \u00fc.svs", 1, 2),)


def test_edgetrim_values() -> None:
    assert parse_manifest("a 0 0\n").edgetrim
    assert parse_manifest("EdgeTrim=YES\na 0 0\n").edgetrim
    assert not parse_manifest("edgetrim=Off\na 0 0\n").edgetrim


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a.svs 0 0\njust some words\n", 2, "expected '<path> <Y-offset> <X-offset>'"),
        ("a.svs 0 0\n\n# c\nb.svs 5\n", 4, "expected '<path>"),
        ("a.svs x 0\n", 1, "integer offsets"),
        ("a.svs -5 0\n", 1, "must not be negative"),
        ("edgetrim=maybe\na 0 0\n", 1, "edgetrim must be yes or no"),
        ("1 5\na 0 0\n2 3\n", 3, "ascending Z"),
        ("1 5\n1 6\n", 2, "declared twice"),
        ("1.5 2\n", 1, "layer number"),
        ("a 0 0\r\n1 nan\r\n", 2, "not an attribute, layer or image line"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_manifest(text, source="bad.aci")
    assert str(err.value).startswith(f"bad.aci:{line}: ")
    assert words in str(err.value)


def test_component_limit_is_checked_while_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mf.MAX_COMPONENTS == 1_000_000
    monkeypatch.setattr(mf, "MAX_COMPONENTS", 5)
    parse_manifest("a 0 0\n" * 5)
    with pytest.raises(LimitError, match=r"m\.aci:6: more than 5 images"):
        parse_manifest("a 0 0\n" * 10, source="m.aci")


def test_declared_canvas_limit_before_any_file_is_opened() -> None:
    assert mf.MAX_CANVAS_PIXELS == 10**12
    parse_manifest("none.svs 999999 999999\n")  # 10^12 px exactly: allowed
    with pytest.raises(LimitError, match=r"m\.aci:2: offsets declare a canvas"):
        parse_manifest("none.svs 0 2000000\nnone.svs 600000 0\n", source="m.aci")
    with pytest.raises(LimitError, match=r"m\.aci:1: offset beyond"):
        parse_manifest("none.svs 0 99999999999999999999\n", source="m.aci")


def test_huge_files_and_lines_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LimitError, match=r"m\.aci:2: line longer"):
        parse_manifest("a 0 0\n" + "x" * (mf.MAX_LINE_CHARS + 1) + " 0 0\n", source="m.aci")
    big = tmp_path / "big.aci"
    big.write_text("a 0 0\n" * 100)
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 99)
    with pytest.raises(LimitError, match=r"big\.aci: manifest is 600 bytes"):
        read_manifest(big)


def test_serialize_canonical_form() -> None:
    m = parse_manifest(EXAMPLE)
    assert serialize(m) == (
        "edgetrim=no\nTitle=Two slides side by side\nmadison.svs 0 0\nkatherine 2.svs 0 58984 (q=70 jpeg)\n"
    )
    layered = parse_manifest("a 0 0\n1 2.5\nb 1 2\n")
    assert serialize(layered) == "0 0\na 0 0\n1 2.5\nb 1 2\n"


@pytest.mark.parametrize(
    "component",
    [
        Component("a\nb", 0, 0),
        Component(" lead", 0, 0),
        Component("#x", 0, 0),
        Component("k=v", 0, 0),
        Component("a", 0, 0, ("two words",)),
        Component("a", 0, 0, ("(",)),
    ],
)
def test_serialize_refuses_what_cannot_read_back(component: Component) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        serialize(Manifest((), (Layer(0, 0.0, (component,)),)))


# -- parse -> serialize -> parse is the identity ------------------------------------------------
_path_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="=\x85")
_paths = st.text(_path_chars, min_size=1, max_size=24).filter(
    lambda p: p == p.strip() and p.strip() and not p.startswith("#")
)
_words = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Z"), blacklist_characters="()\x85"), min_size=1, max_size=8
)
_components = st.builds(
    Component,
    _paths,
    st.integers(0, 999_998),
    st.integers(0, 999_998),
    st.lists(_words, max_size=3).map(tuple),
)
_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"), max_size=20
).map(str.strip)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    zs = sorted(set(draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=3))))
    numbers = draw(st.permutations(range(len(zs))))
    layers = tuple(
        Layer(n, z, tuple(draw(st.lists(_components, min_size=1, max_size=4))))
        for n, z in zip(numbers, zs, strict=True)
    )
    attributes = tuple(draw(st.lists(st.tuples(_keys, _values), max_size=3)))
    return Manifest(attributes, layers)


def _readable(m: Manifest) -> bool:
    try:
        serialize(m)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(manifests().filter(_readable))
def test_parse_serialize_parse_identity(m: Manifest) -> None:
    text = serialize(m)
    again = parse_manifest(text)
    assert again == m
    assert serialize(again) == text
    assert parse_manifest(text.replace("\n", "\r\n")) == m


@settings(max_examples=200, deadline=None)
@given(st.lists(_components, min_size=1, max_size=5))
def test_serializable_paths_are_the_common_case(components: list[Component]) -> None:
    # the round trip above must not be vacuous: almost every generated image line is writable
    m = Manifest((), (Layer(0, 0.0, tuple(components)),))
    assert parse_manifest(serialize(m)) == m
