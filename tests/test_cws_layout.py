"""The CWS layout alone gives the files the CWS writer writes: same names, same INI text, same blocks.

The server's virtual CWS directories answer from :class:`CwsLayout` one file at a time; the writer
streams a whole level through the tile pipeline. These tests convert slides (copied, re-encoded,
re-tiled, computed levels, focal planes) and compare every INI file and block with what the layout
gives for the same name on its own, and check the block filter drops blocks from both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from composite import codecs
from composite.convert import WriteOptions, convert
from composite.formats.cws.layout import BlockRef, CwsLayout, block_bytes
from composite.formats.cws.write import WRITER
from composite.plan import make_plan
from composite.registry import open_slide
from composite.synthetic import write_synthetic_slide
from composite.tiling import EncodedTile, output_encoding

from .cws_scanner import write_scanner_slide

COMPANIONS = {"SlideThumb.jpg", "Ss1.jpg", "Label.jpg", "Macro.jpg"}


def _compare(src: Path, out: Path, options: WriteOptions) -> CwsLayout:
    convert(src, out, to="cws", options=options)
    written = {p.name for p in out.iterdir()}
    with open_slide(src) as slide, make_plan(slide, options, WRITER.rules, spool_dir=out.parent) as plan:
        layout = CwsLayout(plan)
        names = list(layout.file_names())
        assert len(names) == len(set(names))
        assert set(names) == written
        for index, name in enumerate(layout.ini_names):
            assert layout.ini_text(index) == (out / name).read_bytes(), name
        blocks = [n for n in names if n.endswith(".jpg") and n not in COMPANIONS]
        assert blocks
        # From the last block backwards: a computed level must not depend on the order of reads.
        for name in reversed(blocks):
            ref = layout.block_ref(name)
            assert ref is not None, name
            assert layout.block(ref) == (out / name).read_bytes(), name
        return layout


def test_copied_svs_blocks_and_ini(synthetic_svs: Path, tmp_path: Path) -> None:
    layout = _compare(synthetic_svs, tmp_path / "out", WriteOptions())
    assert layout.plan.levels[0].method == "copy"


def test_reencoded_and_retiled_blocks(synthetic_tiff: Path, tmp_path: Path) -> None:
    """752x480 blocks from 256-px YCbCr tiles: every block composed from several source tiles,
    padded with the glass colour at the edges, levels computed below."""
    layout = _compare(synthetic_tiff, tmp_path / "out", WriteOptions(tile_size=(752, 480), quality=85))
    assert {level.method for level in layout.plan.levels} >= {"reencode"}


def test_computed_levels_from_a_one_level_source(tmp_path: Path) -> None:
    src = write_synthetic_slide(
        tmp_path / "flat.tif", width=9000, height=1800, tile_size=256, layout="tiff", min_level_size=100_000
    )
    layout = _compare(src, tmp_path / "out", WriteOptions())
    assert [level.method for level in layout.plan.levels] == ["copy", "downsample", "downsample"]


def test_focal_planes(tmp_path: Path) -> None:
    scan = write_scanner_slide(tmp_path / "scan", planes=("u1", "d1"), missing=None).path
    layout = _compare(scan, tmp_path / "out", WriteOptions(tile_size=(256, 256)))
    assert set(layout.planes) == {"u1", "d1"}


def test_real_svs_and_dicom(openslide_data: Path, tmp_path: Path) -> None:
    _compare(openslide_data / "small.svs", tmp_path / "svs", WriteOptions())
    _compare(openslide_data / "boxes_0.dcm", tmp_path / "dicom", WriteOptions())
    _compare(openslide_data / "boxes.tiff", tmp_path / "tiff", WriteOptions())


def test_block_names_are_exact(synthetic_svs: Path, tmp_path: Path) -> None:
    with open_slide(synthetic_svs) as slide, make_plan(slide, WriteOptions(), WRITER.rules, spool_dir=tmp_path) as plan:
        layout = CwsLayout(plan)
        grid = layout.grids[1]
        last = grid.cols * grid.rows - 1
        assert layout.block_ref("Da0.jpg") == BlockRef(0, 0, 0)
        assert layout.block_ref(f"L1Da{last}.jpg") == BlockRef(1, grid.cols - 1, grid.rows - 1)
        for name in ("Da00.jpg", "da0.jpg", "Da0.JPG", f"L1Da{last + 1}.jpg", "L0Da0.jpg", "L9Da0.jpg", "Da0_u1.jpg"):
            assert layout.block_ref(name) is None, name


def test_block_filter_drops_blocks_everywhere(tmp_path: Path) -> None:
    scan = write_scanner_slide(tmp_path / "scan", planes=("u1",), missing=None).path
    with open_slide(scan) as slide, make_plan(slide, WriteOptions(), WRITER.rules, spool_dir=tmp_path) as plan:
        everything = CwsLayout(plan)
        some = CwsLayout(plan, keep=lambda level, col, row: (col + row) % 2 == 0)
        names, kept = set(everything.file_names()), set(some.file_names())
        dropped = names - kept
        assert dropped and kept < names
        for name in dropped:
            assert some.block_ref(name) is None
            assert everything.block_ref(name) is not None
        text = some.ini_text(0).decode()
        assert "[Da1]" not in text and "[Da0]" in text
        assert f"iAnalysisImageCount={sum(1 for _ in some.blocks(0))}" in text
        assert "Da1_u1.jpg" in dropped and "Da0_u1.jpg" in kept


def test_reencoded_blocks_are_the_encoders_bytes_copied_ones_made_standalone() -> None:
    """A re-encoded tile is a complete JPEG from codecs.encode_jpeg, with the Adobe marker when
    RGB: its block is those bytes, not parsed again; a copied abbreviated tile gets its tables
    and the marker back."""
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    for rgb in (False, True):
        data = codecs.encode_jpeg(pixels, quality=80, rgb=rgb)
        assert block_bytes(EncodedTile(0, 0, data, output_encoding("jpeg", quality=80, rgb=rgb))) is data
        assert codecs.has_adobe_marker(data) == rgb
    complete = codecs.encode_jpeg(pixels, quality=80, rgb=True)
    tables, abbreviated = codecs.split_jpeg_tables(complete)
    encoding = codecs.TileEncoding("jpeg", rgb=True, jpeg_tables=tables)
    block = block_bytes(EncodedTile(0, 0, abbreviated, encoding, copied=True))
    assert codecs.has_adobe_marker(block)
    assert np.array_equal(codecs.decode_image(block), codecs.decode_image(complete))
