"""Skipping glass (``--skip-glass``): which blocks are glass, and the CWS written without them.

The slide: :class:`composite.synthetic_glass.GlassScene`, tissue pieces on 35% of a 4800 x 3600
slide, with pale fat, dust and shading. The scene also renders its layers apart, so the tests know
which blocks hold tissue or dust without trusting the glass test. The written CWS is read by our
reader and by the §1.4 reference reader (tests/cws_reference.py, what olyvslideconv computes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from composite import codecs, synthetic
from composite.cli import main as cli_main
from composite.codecs import TileEncoding
from composite.convert import WriteOptions, convert
from composite.errors import UnsupportedFormatError
from composite.formats.cws.layout import CwsLayout, level_ini_name
from composite.formats.cws.write import WRITER as CWS_WRITER
from composite.geometry import TileGrid
from composite.glass import GlassMap, GlassRule, is_glass, pinned, reduced_pixels
from composite.plan import make_plan
from composite.progress import no_progress
from composite.registry import open_slide
from composite.resample import box_downsample
from composite.synthetic_glass import GlassScene
from composite.tiling import EncodedTile

from .batch_support import run_batch
from .cws_reference import compose_level, read_ini

W, H, TILE = 4800, 3600, 240
SCENE = GlassScene(width=W, height=H, tissue=0.35)
GLASS = (243, 243, 245)
STROMA = (232, 170, 200)
Pixels = NDArray[np.uint8]


# -- the glass test on single blocks ------------------------------------------------------------


def _glass(width: int, height: int, *, shade: float = 0.0, seed: int = 0) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.5, (height, width, 3))
    return (np.asarray(GLASS, np.float32) + shade + noise).astype(np.float32)


def _u8(pixels: NDArray[np.float32]) -> Pixels:
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def _fat(width: int, height: int, colour: tuple[int, int, int]) -> Pixels:
    """Pale fat: glass-coloured cells 60 px across with 1-px membranes of ``colour``."""
    out = _glass(width, height, seed=1)
    out[:, 7::60] = colour
    out[13::60, :] = colour
    return _u8(out)


def _faint_tiles(width: int, height: int) -> dict[str, tuple[Pixels, tuple[int, int]]]:
    """Blocks with a little faint tissue, each with its valid (width, height) in the image."""
    tiles: dict[str, tuple[Pixels, tuple[int, int]]] = {
        "pale fat": (_fat(width, height, (233, 215, 228)), (width, height)),
        "paler fat membranes 2 px": (_fat(width, height, (236, 228, 236)), (width, height)),
    }
    for name, index in (("left", np.s_[:, :1]), ("right", np.s_[:, -1:]), ("top", np.s_[:1]), ("bottom", np.s_[-1:])):
        edge = _glass(width, height, seed=2)
        edge[index] = STROMA
        tiles[f"1-px tissue edge {name}"] = (_u8(edge), (width, height))
    fibre = _glass(width, height, seed=3)
    fibre[height // 2, width // 3 : width // 3 + 40] = (225, 195, 215)
    tiles["short pale fibre"] = (_u8(fibre), (width, height))
    cell = _glass(width, height, seed=4)
    cell[41:44, 77:80] = (120, 80, 160)
    tiles["one 3x3 nucleus"] = (_u8(cell), (width, height))
    tip = _glass(width, height, seed=5)
    tip[-4:, :3] = (200, 150, 185)
    tiles["a 3x4 px tip of tissue in a corner"] = (_u8(tip), (width, height))
    # An edge block whose image ends at column 101: tissue in its last valid column, glass padding.
    cut = _glass(width, height, seed=6)
    cut[:, 100] = STROMA
    tiles["1-px edge at the image's right end"] = (_u8(cut), (101, height))
    pale = _glass(width, height, seed=7)
    pale[: height // 3] = (228, 222, 232)
    tiles["a pale stain over a third"] = (_u8(pale), (width, height))
    return tiles


def _glass_tiles(width: int, height: int) -> dict[str, Pixels]:
    return {
        "glass": _u8(_glass(width, height, seed=8)),
        "shaded glass -7": _u8(_glass(width, height, shade=-7, seed=9)),
        "brighter glass +5": _u8(_glass(width, height, shade=5, seed=10)),
    }


def _encode(pixels: Pixels, *, quality: int, ycbcr: bool) -> tuple[bytes, TileEncoding]:
    data = codecs.encode_jpeg(pixels, quality=quality, rgb=not ycbcr)
    return data, TileEncoding("jpeg", rgb=not ycbcr)


CODINGS = [(quality, ycbcr) for quality in (70, 80, 90) for ycbcr in (False, True)]
SIZES = [(240, 240), (256, 256), (752, 480)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_faint_tissue_block_is_glass_and_every_glass_block_is(size: tuple[int, int]) -> None:
    width, height = size
    dropped, kept_glass, count = [], [], 0
    for quality, ycbcr in CODINGS:
        for name, (pixels, valid) in _faint_tiles(width, height).items():
            data, encoding = _encode(pixels, quality=quality, ycbcr=ycbcr)
            reduced = reduced_pixels(data, encoding, size=size, valid=valid)
            count += 1
            if is_glass(reduced, background=GLASS):
                dropped.append(f"{name} Q{quality}{' YCbCr' if ycbcr else ''}")
        for name, pixels in _glass_tiles(width, height).items():
            data, encoding = _encode(pixels, quality=quality, ycbcr=ycbcr)
            if not is_glass(reduced_pixels(data, encoding, size=size, valid=size), background=GLASS):
                kept_glass.append(f"{name} Q{quality}{' YCbCr' if ycbcr else ''}")
    assert count == 11 * len(CODINGS)
    assert dropped == []
    assert kept_glass == []


def test_the_tolerance_decides() -> None:
    glass = _u8(_glass(240, 240, shade=-4))
    reduced = reduced_pixels(*_encode(glass, quality=90, ycbcr=False), size=(240, 240), valid=(240, 240))
    assert is_glass(reduced, background=GLASS, tolerance=8)
    assert not is_glass(reduced, background=GLASS, tolerance=0)
    stain = _glass(240, 240)
    stain[:] = (228, 222, 232)  # uniformly pale: 21 levels off the glass in green
    reduced = reduced_pixels(*_encode(_u8(stain), quality=90, ycbcr=False), size=(240, 240), valid=(240, 240))
    assert not is_glass(reduced, background=GLASS, tolerance=8)
    assert is_glass(reduced, background=GLASS, tolerance=12)  # within 2 x 12 of the glass: shading


def test_other_codecs_and_undecodable_tiles() -> None:
    grid = TileGrid(720, 480, 240, 240)
    rule = GlassRule(background=GLASS)
    glass = _u8(_glass(240, 240))
    edge = glass.copy()
    edge[:, 0] = STROMA
    for compression, encode in (("none", lambda p: p.tobytes()), ("lzw", lambda p: codecs.encode_lzw(p.tobytes()))):
        encoding = TileEncoding(compression, rgb=True)
        assert rule.tile_is_glass(encode(glass), encoding, grid=grid, col=1, row=0)
        assert not rule.tile_is_glass(encode(edge), encoding, grid=grid, col=1, row=0)
    j2k = TileEncoding("jpeg2000", rgb=True)
    assert rule.tile_is_glass(codecs.encode_jpeg2000(glass, quality=90), j2k, grid=grid, col=1, row=0)
    assert not rule.tile_is_glass(codecs.encode_jpeg2000(edge, quality=90), j2k, grid=grid, col=1, row=0)
    # A damaged tile is not glass: it is kept, and its reader reports it.
    assert not rule.tile_is_glass(b"\xff\xd8\xff\xdb\x00", TileEncoding("jpeg"), grid=grid, col=1, row=0)
    # The pinned tiles are kept whatever they hold.
    glass_map = GlassMap([grid], rule)
    data = codecs.encode_jpeg(glass, quality=90)
    assert glass_map.observe(0, 0, 0, data, TileEncoding("jpeg")) and glass_map.keep(0, 0, 0)
    assert not glass_map.observe(0, 1, 0, data, TileEncoding("jpeg")) and glass_map.keep(0, 1, 0) is False
    assert pinned(TileGrid(4800, 3600, 240, 240)) == ((0, 0), (19, 14))


def test_tolerance_is_checked() -> None:
    with pytest.raises(ValueError, match="glass tolerance"):
        WriteOptions(glass_tolerance=65)
    with pytest.raises(ValueError, match="glass tolerance"):
        GlassRule(background=GLASS, tolerance=-1)


# -- the generator ------------------------------------------------------------------------------


def test_the_default_synthetic_pixels_did_not_change() -> None:
    """Tests and benchmark figures made with the default pattern must not shift (a scene is opt-in)."""
    pixels = synthetic.region(100, 200, 300, 200).tobytes()
    pixels += synthetic.region(0, 0, 256, 256, downsample=4, seed=3).tobytes()
    assert hashlib.sha256(pixels).hexdigest() == "feeb6753ac0dc8327ae10aba00ae1089d4644de4e6ebff6051d4007c33f1d43b"


def _layers(grid: TileGrid, col: int, row: int, downsample: int = 1) -> tuple[Pixels, Pixels, Pixels]:
    """(glass only, glass + tissue, glass + dust) of one block, as int16 arrays."""
    box = grid.tile_box(col, row)
    args = (box.x, box.y, box.width, box.height)
    glass = SCENE.region(*args, downsample=downsample, tissue=False, dust=False).astype(np.int16)
    tissue = SCENE.region(*args, downsample=downsample, dust=False).astype(np.int16)
    dust = SCENE.region(*args, downsample=downsample, tissue=False).astype(np.int16)
    return glass, tissue, dust  # type: ignore[return-value]


@pytest.fixture(scope="module")
def truth() -> dict[str, object]:
    """Which level-0 blocks hold tissue (any pixel 2+ levels off the glass under it) or dust."""
    grid = TileGrid(W, H, TILE, TILE)
    tissue, dust, tissue_pixels = set(), set(), 0
    for col, row in grid.indices():
        glass, with_tissue, with_dust = _layers(grid, col, row)
        off = np.abs(with_tissue - glass).max(axis=2) >= 2
        tissue_pixels += int(off.sum())
        if off.any():
            tissue.add((col, row))
        if (np.abs(with_dust - glass).max(axis=2) >= 2).any():
            dust.add((col, row))
    return {"grid": grid, "tissue": tissue, "dust": dust, "fraction": tissue_pixels / (W * H)}


def test_the_scene_has_tissue_on_35_percent_with_glass_margins_and_dust(truth: dict[str, object]) -> None:
    assert 0.32 <= truth["fraction"] <= 0.38  # type: ignore[operator]
    grid: TileGrid = truth["grid"]  # type: ignore[assignment]
    tissue: set[tuple[int, int]] = truth["tissue"]  # type: ignore[assignment]
    assert not any(col in (0, grid.cols - 1) or row in (0, grid.rows - 1) for col, row in tissue)
    assert len(truth["dust"]) >= 5  # type: ignore[arg-type]


# -- the CWS written without glass ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cws_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("glass")
    source = synthetic.write_synthetic_slide(
        root / "glass.svs", width=W, height=H, tile_size=TILE, stamp=False, min_level_size=1024, scene=SCENE
    )
    convert(source, root / "plain", to="cws")
    convert(source, root / "skip", to="cws", options=WriteOptions(skip_glass=True))
    return source, root / "plain", root / "skip"


def _listed(ini: Path) -> dict[str, tuple[int, int]]:
    return {name: (int(v["x"]), int(v["y"])) for name, v in read_ini(ini).items() if "x" in v and "y" in v}


def _background(directory: Path) -> tuple[int, int, int]:
    text = read_ini(directory / "FinalScan.ini")["Header"]["tbackgroundcolor"]
    red, green, blue = (int(v) for v in text.split(","))
    return red, green, blue


def test_kept_blocks_are_the_tissue_and_dust_blocks_and_the_plain_ones_byte_for_byte(
    cws_pair: tuple[Path, Path, Path], truth: dict[str, object]
) -> None:
    _, plain, skip = cws_pair
    grid: TileGrid = truth["grid"]  # type: ignore[assignment]
    listed = _listed(skip / "FinalScan.ini")
    kept = {(int(name[2:]) % grid.cols, int(name[2:]) // grid.cols) for name in listed}
    tissue: set[tuple[int, int]] = truth["tissue"]  # type: ignore[assignment]
    dust: set[tuple[int, int]] = truth["dust"]  # type: ignore[assignment]
    assert tissue <= kept, f"tissue blocks dropped: {sorted(tissue - kept)}"
    assert kept <= tissue | dust | set(pinned(grid)), f"glass blocks kept: {sorted(kept - tissue - dust)}"
    assert set(pinned(grid)) <= kept
    # Listed blocks keep their names and positions; the header counts them.
    plain_listed = _listed(plain / "FinalScan.ini")
    assert all(plain_listed[name] == xy for name, xy in listed.items())
    assert int(read_ini(skip / "FinalScan.ini")["Header"]["ianalysisimagecount"]) == len(listed)
    # Files: exactly the listed blocks, each the plain conversion's bytes.
    skip_blocks = {p.name for p in skip.iterdir() if re.fullmatch(r"(L\d+)?Da\d+\.jpg", p.name)}
    for ini in skip.glob("*.ini"):
        for name in _listed(ini):
            assert f"{name}.jpg" in skip_blocks
            skip_blocks.discard(f"{name}.jpg")
            assert (skip / f"{name}.jpg").read_bytes() == (plain / f"{name}.jpg").read_bytes()
    assert skip_blocks == set()


def _near(mask: NDArray[np.bool_], cell: int = 8) -> NDArray[np.bool_]:
    """``mask`` grown to whole JPEG blocks and their neighbours (JPEG ringing spreads that far)."""
    rows, cols = -(-mask.shape[0] // cell), -(-mask.shape[1] // cell)
    cells = np.zeros((rows + 2, cols + 2), bool)
    padded = np.zeros((rows * cell, cols * cell), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    cells[1:-1, 1:-1] = padded.reshape(rows, cell, cols, cell).any(axis=(1, 3))
    grown = np.zeros((rows, cols), bool)
    for dy in range(3):
        for dx in range(3):
            grown |= cells[dy : dy + rows, dx : dx + cols]
    return np.repeat(np.repeat(grown, cell, axis=0), cell, axis=1)[: mask.shape[0], : mask.shape[1]]


def test_composed_image_is_the_source_where_tissue_is_and_background_elsewhere(
    cws_pair: tuple[Path, Path, Path],
) -> None:
    source, plain, skip = cws_pair
    background = _background(skip)
    with open_slide(source) as original, open_slide(skip) as ours:
        assert ours.level_dimensions == original.level_dimensions[: len(ours.level_dimensions)]
        for index, level in enumerate(ours.levels):
            expected = original.levels[index].read_region(0, 0, level.width, level.height).astype(np.int16)
            got = level.read_region(0, 0, level.width, level.height).astype(np.int16)
            # Dust may go with the glass around it (docs/cws.md): compared where there is none.
            ds = 4**index
            glass = SCENE.region(0, 0, level.width, level.height, downsample=ds, tissue=False, dust=False)
            dusty = SCENE.region(0, 0, level.width, level.height, downsample=ds, tissue=False)
            clean = ~_near(np.abs(dusty.astype(np.int16) - glass.astype(np.int16)).max(axis=2) >= 2)
            assert np.abs(got - expected).max(axis=2)[clean].max() <= 8, f"level {index}"
            gaps = np.all(got == background, axis=2)
            assert gaps.mean() > (0.3 if index == 0 else 0.0), f"level {index}"
            ini = skip / level_ini_name(index, len(ours.levels))
            crop = (level.width, level.height)
            # The independent reader, painting gaps with the recorded colour, sees the same image.
            theirs = compose_level(ini, crop=crop, gap=background).astype(np.int16)
            assert np.array_equal(theirs, got), f"level {index}"
            # Painting gaps white (olyvslideconv), every kept block is where the plain one is.
            white = compose_level(ini, crop=crop)
            full = compose_level(plain / ini.name, crop=crop)
            listed = np.any(white != 255, axis=2)
            assert np.array_equal(white[listed], full[listed])
            assert not listed.all()


def test_extent_is_pinned_when_the_outer_rows_and_columns_are_glass(cws_pair: tuple[Path, Path, Path]) -> None:
    _, plain, skip = cws_pair
    for ini in skip.glob("*.ini"):
        kept, every = _listed(ini), _listed(plain / ini.name)
        for axis in (0, 1):
            assert max(v[axis] for v in kept.values()) == max(v[axis] for v in every.values())
            assert min(v[axis] for v in kept.values()) == min(v[axis] for v in every.values())
        assert compose_level(ini).shape == compose_level(plain / ini.name).shape


def test_a_skip_glass_cws_converts_back_with_background_where_blocks_are_missing(
    cws_pair: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, _, skip = cws_pair
    convert(skip, tmp_path / "again.svs")
    with open_slide(tmp_path / "again.svs") as again, open_slide(skip) as ours:
        level = ours.levels[0]
        back = again.levels[0].read_region(0, 0, level.width, level.height).astype(np.int16)
        assert np.abs(back - level.read_region(0, 0, level.width, level.height).astype(np.int16)).max() <= 3
        assert np.all(back[: TILE // 2, TILE + 8 : 2 * TILE - 8] == _background(skip))  # block (1, 0): glass


# -- options, errors, command line, batch ---------------------------------------------------------


def test_formats_that_cannot_leave_tiles_out_refuse(cws_pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    source = cws_pair[0]
    with pytest.raises(UnsupportedFormatError, match="cannot leave glass"):
        convert(source, tmp_path / "out.aci", options=WriteOptions(skip_glass=True))


def test_cli_skip_glass(cws_pair: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = cws_pair[0]
    assert cli_main(["convert", str(source), str(tmp_path / "cws"), "--to", "cws", "--skip-glass", "--quiet"]) == 0
    assert "glass tiles left out" in capsys.readouterr().out
    assert cli_main(["convert", str(source), str(tmp_path / "x.aci"), "--skip-glass", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot leave glass" in err[0]
    with pytest.raises(SystemExit) as stop:
        cli_main(["convert", str(source), str(tmp_path / "y"), "--to", "cws", "--glass-tolerance", "99"])
    assert stop.value.code == 2


def test_batch_skips_glass(tmp_path: Path) -> None:
    scene = GlassScene(width=2400, height=1800, tissue=0.3, seed=1)
    (tmp_path / "in").mkdir()
    synthetic.write_synthetic_slide(tmp_path / "in/a.svs", width=2400, height=1800, stamp=False, scene=scene)
    done = run_batch(str(tmp_path / "in"), str(tmp_path / "out"), "--to", "cws", "--skip-glass", "--processes", "1")
    assert done.returncode == 0, done.stderr
    header = read_ini(next((tmp_path / "out").rglob("FinalScan.ini")))["Header"]
    assert "tbackgroundcolor" in header and int(header["ianalysisimagecount"]) < 10 * 8


def test_a_server_surveys_a_level_on_first_use(cws_pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A virtual CWS must list a level before any block is asked for: the map surveys each level on
    first use, and the layout then gives the INI files the writer wrote."""
    source, _, skip = cws_pair
    with (
        open_slide(source) as slide,
        make_plan(slide, WriteOptions(skip_glass=True), CWS_WRITER.rules, spool_dir=tmp_path) as plan,
    ):
        assert plan.glass is not None
        surveyed: list[int] = []

        def survey(index: int) -> Iterator[EncodedTile]:
            surveyed.append(index)
            return plan.levels[index].tiles(progress=no_progress)

        levels = [level.level for level in plan.levels]
        glass = GlassMap([level.grid for level in plan.levels], plan.glass, levels=levels, survey=survey)
        layout = CwsLayout(plan, keep=glass.keep)
        for index, name in enumerate(layout.ini_names):
            assert layout.ini_text(index) == (skip / name).read_bytes()
        assert surveyed == list(range(len(plan.levels)))


class _FaintScene:
    """Glass with one faint feature (tests' faint-tissue set) in every other block, far apart, so
    the screen meets each alone in glass; lower levels are exact box means of level 0."""

    def __init__(self) -> None:
        tiles = [pixels for name, (pixels, valid) in _faint_tiles(TILE, TILE).items() if valid == (TILE, TILE)]
        self.blocks = [(1 + 2 * (k % 5), 1 + 2 * (k // 5)) for k in range(len(tiles))]
        self.width, self.height = 11 * TILE, (2 * (len(tiles) // 5) + 3) * TILE
        canvas = _u8(_glass(self.width + 4 * TILE, self.height + 4 * TILE, seed=11))
        for (col, row), pixels in zip(self.blocks, tiles, strict=True):
            canvas[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = pixels
        self._levels = {1: canvas}

    def region(self, x: int, y: int, width: int, height: int, *, downsample: int = 1) -> Pixels:
        if downsample not in self._levels:
            self._levels[downsample] = box_downsample(self._levels[1], downsample)
        level = self._levels[downsample]
        out = np.full((height, width, 3), GLASS, np.uint8)
        part = level[y : y + height, x : x + width]
        out[: part.shape[0], : part.shape[1]] = part
        return out


def test_faint_tissue_alone_in_glass_is_kept_by_the_whole_pipeline(tmp_path: Path) -> None:
    """The screen (the next level) sees each faint feature, or sends its block to be decoded."""
    scene = _FaintScene()
    source = synthetic.write_synthetic_slide(
        tmp_path / "faint.svs",
        width=scene.width,
        height=scene.height,
        tile_size=TILE,
        quality=80,
        stamp=False,
        min_level_size=256,
        scene=scene,
    )
    report = convert(source, tmp_path / "cws", to="cws", options=WriteOptions(skip_glass=True))
    grid = TileGrid(scene.width, scene.height, TILE, TILE)
    kept = {(int(n[2:]) % grid.cols, int(n[2:]) // grid.cols) for n in _listed(tmp_path / "cws/FinalScan.ini")}
    assert set(scene.blocks) <= kept, f"faint blocks dropped: {sorted(set(scene.blocks) - kept)}"
    assert kept == set(scene.blocks) | set(pinned(grid))
    assert report.levels[0].glass_tiles == grid.tile_count - len(kept)


def test_svs_and_tiff_refuse_skip_glass_because_readers_disagree_on_empty_tiles(tmp_path: Path) -> None:
    """docs/convert.md: an empty TIFF tile is transparent in OpenSlide and black in tifffile (and in
    Bio-Formats; libvips fails), so SVS/TIFF output refuses --skip-glass. If this tripwire breaks,
    the readers changed: check them all again before offering empty tiles."""
    import openslide
    import tifffile

    path = synthetic.write_synthetic_slide(tmp_path / "s.svs", width=720, height=480, stamp=False)
    with tifffile.TiffFile(path, mode="r+b") as tiff:
        offsets, counts = tiff.pages[0].tags["TileOffsets"], tiff.pages[0].tags["TileByteCounts"]
        offsets.overwrite([0, *offsets.value[1:]])
        counts.overwrite([0, *counts.value[1:]])
    with tifffile.TiffFile(path) as tiff:
        assert not tiff.pages[0].asarray()[:TILE, :TILE].any()  # black
    with openslide.OpenSlide(str(path)) as theirs:
        assert not np.asarray(theirs.read_region((0, 0), 0, (TILE, TILE))).any()  # transparent
    for name in ("out.svs", "out.tif"):
        with pytest.raises(UnsupportedFormatError, match="cannot leave glass tiles out"):
            convert(path, tmp_path / name, options=WriteOptions(skip_glass=True))
