"""Each class of hostile input from the hardening issue, fixed at its cause (docs/limits.md).

The fuzz suite (test_fuzz.py) finds its own cases; these pin the ones the issue named, so a
regression says which rule broke. Commands run in a forked child under a time and memory limit
(tests/fuzz/runner.py): a hang or a balloon is reported instead of stalling the suite.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import composite
from composite import codecs
from composite.errors import FormatError, LimitError, TileReadError
from composite.formats.aci.manifest import Manifest
from composite.synthetic import write_synthetic_slide
from tests.fuzz import runner
from tests.fuzz.binary import parse_tiff
from tests.fuzz.seeds import copy_seed, make_seeds, shared_seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {s.name: s.path for s in make_seeds(shared_seeds(tmp_path_factory))}


def cli(argv: list[str], case: Path) -> runner.RunResult:
    (case / "out").mkdir(exist_ok=True)
    result = runner.run(argv, case)
    result.problems = runner.judge(result, case)
    return result


def one_line(result: runner.RunResult, *needles: str) -> str:
    assert result.status == 2 and not result.problems, result
    line = result.stderr.strip()
    assert "\n" not in line and all(n in line for n in needles), line
    return line


def test_a_plain_image_that_no_codec_decodes_is_one_line(tmp_path: Path) -> None:
    """imagecodecs.imread's error has a line per codec it tried (the campaign's "noise")."""
    data = bytearray(codecs.encode_jpeg(np.full((150, 200, 3), 90, np.uint8), quality=80))
    table = data.index(b"\xff\xc4") + 5  # inside the first Huffman table: its code counts
    data[table : table + 16] = b"\xff" * 16
    path = tmp_path / "bad.jpg"
    path.write_bytes(bytes(data))
    argv = ["convert", str(path), str(tmp_path / "out" / "o.svs")]
    one_line(cli(argv, tmp_path), str(path), "image decode failed: JPEG8_DECODE: ")
    with pytest.raises(TileReadError, match=r"^image decode failed: none of \d+ codecs reads it$"):
        codecs.decode_image(b"\x00" * 64 + bytes(data))  # no signature: which codec failed is not known


@pytest.mark.parametrize("target", ["itself", "first"])
def test_an_ifd_chain_that_loops_is_refused(target: str, seeds: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "loop.svs"
    shutil.copyfile(seeds["synthetic.svs"], path)
    data = bytearray(path.read_bytes())
    tiff = parse_tiff(bytes(data))
    assert tiff is not None and len(tiff.ifds) >= 3
    offset, _, next_pos = tiff.ifds[2]
    struct.pack_into("<I", data, next_pos, offset if target == "itself" else tiff.ifds[0][0])
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="IFD chain loops"):
        composite.open_slide(path)
    one_line(cli(["convert", str(path), str(tmp_path / "out" / "o.svs")], tmp_path), str(path), "loops")


def _set_tag(path: Path, tag: int, value: int, *, count: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    tiff = parse_tiff(bytes(data))
    assert tiff is not None
    entry = next(e for e in tiff.ifds[0][1] if e.tag == tag)
    if count is not None:
        struct.pack_into("<I", data, entry.pos + 4, count)
    elif entry.type == 3:
        struct.pack_into("<H", data, entry.pos + 8, value)
    else:
        struct.pack_into("<I", data, entry.pos + 8, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tag", "value", "count", "message"),
    [
        (322, 15, None, "not a multiple of 16"),  # TileWidth 15
        (322, 1, None, "not a multiple of 16"),
        (277, 0, None, "TIFF"),  # SamplesPerPixel 0: tifffile refuses the page, or we do
        (324, 0, 3, "tile offsets"),  # TileOffsets with a wrong count
        (256, 4_000_000, None, "tile offsets"),  # huge ImageWidth: the grid no longer matches the offsets
    ],
)
def test_damaged_tiff_tags_are_one_line_in_every_command(
    tag: int, value: int, count: int | None, message: str, seeds: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "damaged.svs"
    shutil.copyfile(seeds["synthetic.svs"], path)
    _set_tag(path, tag, value, count=count)
    for argv in (
        ["info", str(path)],
        ["convert", str(path), str(tmp_path / "out" / "o.svs")],
        ["export", str(path), str(tmp_path / "out" / "e")],
    ):
        one_line(cli(argv, tmp_path), str(path), message)


def test_an_associated_jpeg_without_its_scan_is_one_line(openslide_data: Path, tmp_path: Path) -> None:
    """Found by a 30-minute campaign: the frame header was checked, the copy of an RGB JPEG
    then walked the segments (to add the Adobe marker) into the damage and raised ValueError."""
    import tifffile

    path = tmp_path / "damaged.svs"
    shutil.copyfile(openslide_data / "small.svs", path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]  # the thumbnail: one RGB JPEG strip, copied as it is
        start, length = int(page.dataoffsets[0]), int(page.databytecounts[0])
    data = bytearray(path.read_bytes())
    sos = data.index(b"\xff\xda", start, start + length)
    data[sos : sos + 2] = b"\x00\x00"
    path.write_bytes(bytes(data))
    for argv in (
        ["export", str(path), str(tmp_path / "out" / "e"), "--associated"],
        ["convert", str(path), str(tmp_path / "out" / "o"), "--to", "cws"],
        ["convert", str(path), str(tmp_path / "out" / "o.svs")],
    ):
        result = cli(argv, tmp_path)
        assert result.status in (0, 2) and not result.problems, result
        if result.status == 2:
            one_line(result, str(path), "thumbnail image")


@pytest.mark.parametrize("count", [0, 2, 4])
def test_emptied_jpegtables_are_one_line(count: int, seeds: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "tables.svs"
    shutil.copyfile(seeds["synthetic.svs"], path)
    _set_tag(path, 347, 0, count=count)
    for argv in (
        ["convert", str(path), str(tmp_path / "out" / "o.tif"), "--compression", "lzw"],
        ["convert", str(path), str(tmp_path / "out" / "cws"), "--to", "cws"],
    ):
        line = one_line(cli(argv, tmp_path), str(path))
        assert "JPEGTables" in line or f"{path}: tile (" in line, line


def test_a_sparse_aci_canvas_is_refused(seeds: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "m"
    shutil.copytree(seeds["mosaic"], directory)
    (directory / "far.aci").write_text("part0.tif 0 0\npart1.tif 0 2147483648\n")
    with pytest.raises(LimitError, match="mostly empty"):
        composite.open_slide(directory / "far.aci")


def _bomb(block: bytes, width: int, height: int) -> bytes:
    """The same JPEG with a frame header claiming ``width`` x ``height``."""
    for marker, start, _ in codecs.iter_jpeg_segments(block):
        if marker == 0xC0:
            out = bytearray(block)
            out[start + 5 : start + 9] = struct.pack(">HH", height, width)
            return bytes(out)
    raise AssertionError("no SOF0")


def _grown(result: runner.RunResult) -> int:
    """The forked command's peak RSS above this test process's own: the child starts with the
    parent's resident pages, and the pytest worker may have grown in earlier tests."""
    with open("/proc/self/statm", "rb") as fh:
        own = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return result.max_rss - own


@pytest.mark.parametrize("side", [20_000, 65_000])
def test_a_block_whose_header_disagrees_with_the_ini_is_damaged_not_decoded(
    side: int, seeds: dict[str, Path], tmp_path: Path
) -> None:
    slide = copy_seed(composite_seed(seeds, "cws"), tmp_path)
    block = slide / "Da4.jpg"
    block.write_bytes(_bomb(block.read_bytes(), side, side))
    result = cli(["convert", str(slide), str(tmp_path / "out" / "o.tif"), "--compression", "lzw"], tmp_path)
    line = one_line(result, f"{block}: tile (", "JPEG header says", "container says")
    assert _grown(result) < 400 << 20, line
    with composite.open_slide(slide) as opened, pytest.raises(TileReadError, match="JPEG header says"):
        opened.read_region((0, 0), 0, opened.dimensions)


def composite_seed(seeds: dict[str, Path], name: str) -> object:
    from tests.fuzz.seeds import Seed

    return Seed("x", name, seeds[name])


def test_an_associated_image_bomb_is_refused(seeds: dict[str, Path], tmp_path: Path) -> None:
    slide = copy_seed(composite_seed(seeds, "cws"), tmp_path)
    label = slide / "Label.jpg"
    label.write_bytes(_bomb(label.read_bytes(), 65_000, 65_000))
    result = cli(["export", str(slide), str(tmp_path / "out" / "e"), "--associated"], tmp_path)
    assert not result.problems and _grown(result) < 400 << 20, result


@pytest.mark.filterwarnings("ignore::UserWarning")  # the scanner seed has one missing block
def test_scanner_blocks_may_be_cropped_but_not_larger(seeds: dict[str, Path], tmp_path: Path) -> None:
    slide = copy_seed(composite_seed(seeds, "scanner"), tmp_path)
    with composite.open_slide(slide) as opened:
        opened.read_region((0, 0), 0, opened.dimensions)  # the cropped last column reads
    block = slide / "Da0.jpg"
    block.write_bytes(_bomb(block.read_bytes(), 800, 480))
    with composite.open_slide(slide) as opened, pytest.raises(TileReadError, match=f"{block}: tile \\(0, 0\\)"):
        opened.read_region((0, 0), 0, opened.dimensions)


def test_two_one_pixel_blocks_far_apart_are_refused_before_allocating(tmp_path: Path) -> None:
    slide = tmp_path / "spread"
    slide.mkdir()
    pixel = codecs.encode_jpeg(np.zeros((1, 1, 3), np.uint8), quality=90)
    for name in ("Da0", "Da1"):
        (slide / f"{name}.jpg").write_bytes(pixel)
    (slide / "FinalScan.ini").write_text(
        "[Header]\niImageWidth=1\niImageHeight=1\nlXStepSize=4\nlYStepSize=4\n"
        "[Da0]\nx=0\ny=0\n[Da1]\nx=80000\ny=80000\n"
    )
    with pytest.raises(LimitError, match="block files of 1x1 px"):
        composite.open_slide(slide)
    result = cli(["convert", str(slide), str(tmp_path / "out" / "o.svs")], tmp_path)
    one_line(result, "FinalScan.ini", "block files of 1x1 px")
    assert _grown(result) < 400 << 20


@pytest.mark.parametrize("how", ["other-manifest", "hard-link", "symlink", "plain-name"])
def test_manifest_cycles_are_found_by_file_identity(how: str, seeds: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "m"
    shutil.copytree(seeds["mosaic"], directory)
    manifest = directory / "mosaic.aci"
    alias = {"other-manifest": "other.aci", "hard-link": "linked.aci", "symlink": "alias.txt", "plain-name": "copy.dat"}
    name = alias[how]
    if how == "other-manifest":
        (directory / name).write_text("mosaic.aci 0 0\n")
    elif how == "hard-link":
        os.link(manifest, directory / name)
    elif how == "symlink":
        os.symlink("mosaic.aci", directory / name)
    else:
        (directory / name).write_text("mosaic.aci 5 5\n")
    manifest.write_text(manifest.read_text() + f"{name} 0 0\n")
    with pytest.raises(FormatError, match="manifests include each other"):
        composite.open_slide(manifest)
    one_line(cli(["convert", str(manifest), str(tmp_path / "out" / "o.svs")], tmp_path), "include each other")


def test_a_component_that_is_a_symlink_loop_is_one_line(seeds: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "m"
    shutil.copytree(seeds["mosaic"], directory)
    (directory / "part1.tif").unlink()
    os.symlink("part1.tif", directory / "part1.tif")
    one_line(cli(["info", str(directory / "mosaic.aci")], tmp_path), "mosaic.aci:3", "part1.tif")


def test_a_pile_of_identical_lines_paints_once(seeds: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "m"
    shutil.copytree(seeds["mosaic"], directory)
    pile = directory / "pile.aci"
    pile.write_text("part1.tif 0 0\n" * 50_000 + "part0.tif 0 0\n")
    with composite.open_slide(pile) as slide, composite.open_slide(directory / "part0.tif") as part:
        assert np.array_equal(slide.read_region((0, 0), 0, (300, 260)), part.read_region((0, 0), 0, (300, 260)))
    result = cli(["convert", str(pile), str(tmp_path / "out" / "o.svs"), "--quiet"], tmp_path)
    assert result.status == 0 and not result.problems, result


def test_dicom_errors_name_the_file(openslide_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "frame.dcm"
    data = bytearray((openslide_data / "boxes_0.dcm").read_bytes())
    start = data.find(b"\xff\xd8\xff", 132)
    sof = data.find(b"\xff\xc0", start)
    struct.pack_into(">H", data, sof + 2, 0)  # a frame header with no length
    path.write_bytes(bytes(data))
    one_line(
        cli(["convert", str(path), str(tmp_path / "out" / "o.tif"), "--compression", "lzw"], tmp_path),
        f"{path}: tile (0, 0)",
    )


def test_damaged_tiles_in_worker_threads_name_path_and_tile(tmp_path: Path) -> None:
    path = write_synthetic_slide(tmp_path / "s.svs", width=900, height=700, tile_size=240, min_level_size=128)
    with composite.open_slide(path) as slide:
        level = slide.levels[0]
        offset = int(level.reader._offsets[4])  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + 40] = b"\x00" * 38
    path.write_bytes(bytes(data))
    # Re-encoding to another tile size decodes on the pipeline's thread pool.
    argv = ["convert", str(path), str(tmp_path / "out" / "o.svs"), "--tile-size", "256", "--workers", "2"]
    one_line(cli(argv, tmp_path), f"{path}: tile (")


def _line_by_line(text: str) -> object:
    """``text`` parsed by the line parser alone (the columnar path switched off)."""
    from composite.formats.aci import manifest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest, "_only_plain_images", lambda text, source: None)
        return manifest.parse_manifest(text, source="m.aci")


def test_the_fast_manifest_path_reads_what_the_line_parser_reads() -> None:
    import random

    from composite.formats.aci.manifest import parse_manifest

    rng = random.Random(5)
    names = ["a.svs", "dir with spaces/b.tif", "c 1.tif", "x", "img 0"]
    lead, gap, tail = ["", " ", "\t"], [" ", "  ", "\t"], ["", " ", "\r"]
    lines = [
        f"{rng.choice(lead)}{rng.choice(names)}{rng.choice(gap)}{rng.randrange(10**6)}"
        f" {rng.randrange(10**6)}{rng.choice(tail)}"
        for _ in range(2000)
    ]
    for layer in range(5):  # layer lines among them: "0 0" names the implicit layer, then ascending Z
        lines.insert(400 * layer + (layer > 0) * 7, f"{layer} {layer * 1.5:g}")
    text = "\n".join(lines) + "\n"
    fast = parse_manifest(text, source="m.aci")
    assert len(fast.layers) == 5
    slow = _line_by_line(text)
    assert fast.layers[0].components.__class__.__name__ == "ComponentTable"
    assert fast == slow
    assert [c.line for _, c in fast.components()] == [c.line for _, c in slow.components()]
    assert parse_manifest("a.svs 1 2\n\nb.svs 3 4\n") == parse_manifest("a.svs 1 2\nb.svs 3 4\n")
    mixed = parse_manifest("edgetrim=no\n# made by hand\n\na.svs 1 2\n0 0\nb.svs 3 4\n")
    assert mixed.layers[0].components.__class__.__name__ == "ComponentTable" and not mixed.edgetrim


@pytest.mark.parametrize(
    "text",
    [
        "a 1 2\nb 3 4\na 5 6\n",  # paths without spaces: one segment, no layer line
        "0 0\na 1 2\n1 5\n2 7\nb 3 4\n",  # an empty layer between two
        "a 1 2\n0 0\nb 3 4\n3 1.5\n",  # "0 0" names the implicit layer; a last layer without images
        "a 1 2\n0 4\nb 3 4\n",  # layer 0 declared again: refused by both
        "1 2\na 1 2\n1 3\nb 3 4\n",  # layer 1 twice
        "a 1 2\r\n\tb  3\t4 \r\n",  # CRLF, tabs, runs of spaces
        "a 1 2\nb 0 99999999999999\n",  # an offset past any canvas: refused with its line
        "a 1 2\nb -3 4\n",  # a sign
        "5 5 5\n7 8\n",  # a path that is a number, then a layer
        "edgetrim=no\n# note\n\na 1 2\n x = y \r\n1 3\nb 3 4\n",  # attributes, comments, blank lines
        "a=b 1 2\nc 1 2\n1x=y 3 4\n",  # '=' in the first word: an attribute, or a path
        "edgetrim=maybe\na 1 2\n",  # refused with its line
        "a 1 2 (q=80)\nb 3 4\n",  # quality words: the line parser
        "#a 1 2\n# b 3 4\nc 5 6\n",  # comments that look like image lines
        "dir x/a.svs 1 2\nb 3 4\n0 0\nc d 5 6\n",  # paths with spaces among simple lines
        "# c\na 1 2\n\n# d\nb y 3 4\n1 5\n# e\n\n",  # comments and blank lines among image lines
        "# only\n\n# comments\n",  # no image line: refused by the reader, parsed alike
        "a 1 2\n\x02\n",  # a control character alone on a line is not a blank line
    ],
)
@pytest.mark.parametrize("chunk", [1 << 20, 7])
def test_the_fast_manifest_path_agrees_on_edge_cases(text: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from composite.formats.aci import table
    from composite.formats.aci.manifest import parse_manifest

    monkeypatch.setattr(table, "_CHUNK", chunk)  # 7: the columns are read a line or two at a time
    outcomes: list[tuple[object, object]] = []
    for parse in (lambda: parse_manifest(text, source="m.aci"), lambda: _line_by_line(text)):
        try:
            m = parse()
            assert isinstance(m, Manifest)
            outcomes.append(([(layer.number, layer.z, list(layer.components)) for layer in m.layers], m))
        except ValueError as err:
            outcomes.append((str(err), None))
    assert outcomes[0][0] == outcomes[1][0]
    fast, slow = outcomes[0][1], outcomes[1][1]
    if isinstance(fast, Manifest) and isinstance(slow, Manifest):
        assert fast == slow and [c.line for _, c in fast.components()] == [c.line for _, c in slow.components()]


def test_the_fast_manifest_path_reports_the_image_limit_at_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from composite.formats.aci import manifest

    monkeypatch.setattr(manifest, "MAX_COMPONENTS", 5)
    text = "a 0 0\n1 1\n" + "b 1 1\n" * 3 + "2 2\n" + "c 2 2\n" * 3
    with pytest.raises(LimitError, match=r"m\.aci:8: more than 5 images"):
        manifest.parse_manifest(text, source="m.aci")
    with pytest.raises(LimitError, match=r"m\.aci:8: more than 5 images"):
        _line_by_line(text)


def test_the_jpeg_export_limit_is_the_encoders() -> None:
    """Found by a 30-minute campaign: a 65,535 x 1 px plain image passed the 65,535 px check and
    the JPEG encoder (libjpeg: at most 65,500) raised. The limit is now what the encoder takes."""
    from composite.tools.imagefiles import JPEG_MAX_SIDE, encode_image, fit_problem

    line = np.zeros((1, JPEG_MAX_SIDE, 3), np.uint8)
    assert encode_image(line, "jpeg", quality=80).startswith(b"\xff\xd8")
    with pytest.raises(OSError):  # libjpeg: "Maximum supported image dimension is 65500 pixels"
        encode_image(np.zeros((1, JPEG_MAX_SIDE + 1, 3), np.uint8), "jpeg", quality=80)
    assert fit_problem(JPEG_MAX_SIDE + 1, 1, "jpeg", memory_budget=10**9) is not None
    assert fit_problem(JPEG_MAX_SIDE, 1, "jpeg", memory_budget=10**9) is None
