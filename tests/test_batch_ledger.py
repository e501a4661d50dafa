"""The batch ledger's options key: only options that differ from their defaults count, so a
field added to WriteOptions (with a default) keeps old ledger lines valid. In-process dry runs
(no dask, no conversion) against ledger lines written by hand, as older versions wrote them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from composite.batch import convert_many, ledger
from composite.batch import run as batch_run
from composite.output import TiffOptions, WriteOptions
from composite.synthetic import write_synthetic_slide


def _done_line(source: Path, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    output.mkdir(parents=True)
    (output / "ImgInfo.ini").write_text("x")  # the output exists: all a rerun checks of it
    sig = ledger.signature(source)
    line = {"status": "done", "source": str(source), **sig.as_json(), "options": options}
    return line | {"output": str(output), "output_size": 1, "megapixels": 0.1}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    write_synthetic_slide(src / "one.svs", width=400, height=300, tile_size=240)
    return src


def _plan(src: Path, dst: Path, options: WriteOptions | None = None) -> list[str]:
    report = convert_many(src, dst, to="cws", options=options, dry_run=True)
    return [f"{r.status} {r.reason}" for r in report.results]


def test_key_holds_only_what_differs_from_the_defaults() -> None:
    assert batch_run.options_key("cws", WriteOptions()) == {"to": "cws"}
    key = batch_run.options_key("svs", WriteOptions(quality=80, tile_size=(256, 256), tiff=TiffOptions(ome=True)))
    assert key == {"to": "svs", "quality": 80, "tile_size": [256, 256], "tiff": {"ome": True}}
    assert batch_run.options_key("cws", WriteOptions(workers=1, overwrite=True, parents=True)) == {"to": "cws"}


def test_an_old_full_ledger_line_stays_valid(archive: Path, tmp_path: Path) -> None:
    """A line written before sparse keys (every field, defaults included) and before the glass
    fields existed: still done, unchanged; with a changed option it is redone."""
    dst = tmp_path / "out"
    full = json.loads(json.dumps({"to": "cws", **batch_run._plain(WriteOptions())}, default=str))
    for name in ("skip_glass", "glass_tolerance"):  # fields added to WriteOptions later, with defaults
        del full[name]
    dst.mkdir()
    ledger.append(dst, [_done_line((archive / "one.svs").absolute(), (dst / "one").absolute(), full)])
    assert _plan(archive, dst) == ["skipped done before, unchanged"]
    assert _plan(archive, dst, WriteOptions(quality=70)) == ["todo options changed"]
    assert _plan(archive, dst, WriteOptions(skip_glass=True)) == ["todo options changed"]


def test_a_sparse_line_stays_valid_when_a_defaulted_field_is_added(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dst = tmp_path / "out"
    dst.mkdir()
    source, output = (archive / "one.svs").absolute(), (dst / "one").absolute()
    ledger.append(dst, [_done_line(source, output, batch_run.options_key("cws", WriteOptions(quality=85)))])

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Newer(WriteOptions):  # the next version, with one more option
        sharpen: float = 0.0

    monkeypatch.setattr(batch_run, "_DEFAULTS", batch_run._plain(Newer()))
    assert _plan(archive, dst, Newer(quality=85)) == ["skipped done before, unchanged"]
    assert _plan(archive, dst, Newer(quality=85, sharpen=0.5)) == ["todo options changed"]


def test_partials_of_many_outputs_are_removed_with_one_listing_per_folder(tmp_path: Path) -> None:
    """What killed conversions left beside their outputs goes (a CWS directory's, an SVS file's
    .old, an ACI output's pieces directory's); another name's temporaries and the outputs stay."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / ".x.123-abcd0123.partial").mkdir()  # a CWS output x, half written
    (a / ".x.123-abcd0123.partial" / "block.jpg").write_bytes(b"x")
    (a / ".y.svs.55-ff00ff00.old").write_bytes(b"y")
    (b / ".z_pieces.7-01234567.partial").mkdir()
    keep = [a / ".w.1-00000000.partial", a / ".x2.1-00000000.partial", a / "x", b / "z.aci"]
    keep[0].write_bytes(b"w")
    keep[1].write_bytes(b"x2")
    keep[2].mkdir()
    keep[3].write_text("{}")
    outputs = [a / "x", a / "y.svs", b / "z.aci", tmp_path / "missing" / "q.svs"]
    removed = ledger.remove_partials(iter(outputs))
    assert sorted(p.name for p in removed) == [
        ".x.123-abcd0123.partial",
        ".y.svs.55-ff00ff00.old",
        ".z_pieces.7-01234567.partial",
    ]
    assert sorted(p.name for p in [*a.iterdir(), *b.iterdir()]) == sorted(p.name for p in keep)
