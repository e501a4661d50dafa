"""Annotation files: ImageScope XML and QuPath GeoJSON read as their programs write them, written
back, converted by the CLI, and hostile input refused with one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import shapely
from shapely.geometry import shape

from composite.annotations import model as annotation_model
from composite.annotations import read_annotations, write_annotations
from composite.errors import FormatError, LimitError
from tests.cli import run

from .annotation_fixtures import IMAGESCOPE_XML, QUPATH_02_GEOJSON, QUPATH_GEOJSON, TUMOUR_HOLE, TUMOUR_RING

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def xml_file(tmp_path: Path) -> Path:
    path = tmp_path / "slide.xml"
    path.write_text(IMAGESCOPE_XML)
    return path


@pytest.fixture
def geojson_file(tmp_path: Path) -> Path:
    path = tmp_path / "slide.geojson"
    path.write_text(QUPATH_GEOJSON)
    return path


def test_imagescope_regions_layers_and_holes(xml_file: Path) -> None:
    annotations = read_annotations(xml_file)
    assert annotations.mpp == 0.25
    got = [(r.classification, r.name, r.kind, r.geometry["type"]) for r in annotations.regions]
    assert got == [
        ("Tumour", "T1", "polygon", "Polygon"),
        ("Tumour", "E1", "ellipse", "Polygon"),
        ("Tumour", "look here", "line", "LineString"),
        ("Stroma", "S1", "rectangle", "Polygon"),
        ("Stroma", "", "line", "LineString"),
        ("Stroma", "mitosis", "point", "Point"),
    ]
    tumour, ellipse, _, rectangle, _, point = annotations.regions
    assert tumour.color == (255, 0, 0) and rectangle.color == (0, 0, 255)  # LineColor is 0x00BBGGRR
    outer = shapely.Polygon([(310.5, 250), (1290, 330.25), (1160, 1090), (700, 850), (420, 990)])
    hole = shapely.Polygon([(600, 450), (900, 480), (820, 700)])
    assert len(tumour.geometry["coordinates"]) == 2, "the NegativeROA region is a hole of T1"
    assert shape(tumour.geometry).area == pytest.approx(outer.area - hole.area)
    assert shape(ellipse.geometry).bounds == (1700, 900, 2400.5, 1500)
    assert shape(ellipse.geometry).area == pytest.approx(3.14159265 * 350.25 * 300, rel=2e-3)
    assert shape(rectangle.geometry).equals(shapely.box(2500, 1700, 2900, 2050))
    assert point.geometry == {"type": "Point", "coordinates": [1500.0, 1800.0]}
    assert [r.name for r in annotations.select(["stroma", "T1"]).regions] == ["T1", "S1", "", "mitosis"]
    with pytest.raises(FormatError, match="no region named or classified nothing"):
        annotations.select(["nothing"])


def test_qupath_geojson_classes_holes_and_multipolygons(geojson_file: Path, tmp_path: Path) -> None:
    annotations = read_annotations(geojson_file)
    assert annotations.mpp is None
    tumour, stroma, mitosis = annotations.regions
    assert (tumour.name, tumour.classification, tumour.color) == ("tumour A", "Tumor", (200, 0, 0))
    assert tumour.geometry["coordinates"] == [TUMOUR_RING, TUMOUR_HOLE]
    assert (stroma.classification, stroma.geometry["type"]) == ("Stroma", "MultiPolygon")
    assert shape(stroma.geometry).area == pytest.approx(700 * 500 - 200 * 200 + shapely.Polygon(
        [(2500, 300), (2900, 250), (2850, 800)]).area)  # fmt: skip
    assert (mitosis.classification, mitosis.kind) == ("Tumor: Mitosis", "point")
    old = tmp_path / "old.json"
    old.write_text(QUPATH_02_GEOJSON)
    (region,) = read_annotations(old).regions
    assert (region.classification, region.color, region.name) == ("Tumor", (200, 0, 0), "")


def test_round_trips(xml_file: Path, geojson_file: Path, tmp_path: Path) -> None:
    source = read_annotations(xml_file)
    write_annotations(source, tmp_path / "a.geojson")
    via_geojson = read_annotations(tmp_path / "a.geojson")
    write_annotations(via_geojson, tmp_path / "b.xml", mpp=0.25)
    back = read_annotations(tmp_path / "b.xml")
    assert back.regions == source.regions and back.mpp == 0.25  # kinds, names, layers, colours, vertices
    qupath = read_annotations(geojson_file)
    write_annotations(qupath, tmp_path / "q.xml")
    write_annotations(read_annotations(tmp_path / "q.xml"), tmp_path / "q.geojson")
    again = read_annotations(tmp_path / "q.geojson")
    # ImageScope has no multi-part region: the MultiPolygon comes back as one region per part
    assert again.regions[0] == qupath.regions[0]
    parts = [r for r in again.regions if r.classification == "Stroma"]
    assert len(parts) == 2 and shapely.union_all([shape(p.geometry) for p in parts]).equals(
        shape(qupath.regions[1].geometry)
    )
    assert again.regions[-1].geometry == qupath.regions[-1].geometry
    features = json.loads((tmp_path / "q.geojson").read_text())["features"]
    assert features[0]["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}


def test_cli_convert_and_list(xml_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.geojson"
    result = run("annotations", "convert", str(xml_file), str(out), "--select", "Tumour")
    assert result.returncode == 0, result.stderr
    assert "3 regions" in result.stdout
    assert [f["properties"]["name"] for f in json.loads(out.read_text())["features"]] == ["T1", "E1", "look here"]
    again = run("annotations", "convert", str(xml_file), str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    listed = run("annotations", "list", str(xml_file))
    assert listed.returncode == 0 and "6 regions, 0.25 um/px" in listed.stdout and "ellipse" in listed.stdout


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Annotations><Annotation Name="&lol4;"><Regions/></Annotation></Annotations>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Annotations><Annotation Name="&secret;"><Regions/></Annotation></Annotations>
"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE Annotations SYSTEM "http://127.0.0.1:9/annotations.dtd">
<Annotations/>
"""


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (BILLION_LAUGHS, "DTD"),
        (EXTERNAL_ENTITY, "DTD"),
        (EXTERNAL_DTD, "DTD"),
        ("<Annotations><Annotation>", "not an acceptable ImageScope XML"),
        ('<Annotations><Annotation><Regions><Region><Vertices><Vertex X="nan" Y="1"/>', "not a finite"),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
            '{"type": "Polygon", "coordinates": [[[0, 0], [1e999, 0], [1, 1], [0, 0]]]}}]}',
            "not a finite",
        ),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"type": "GeometryCollection", "geometries": []}', "not GeoJSON annotations"),
        ("hello", "neither ImageScope XML nor GeoJSON"),
    ],
)
def test_hostile_or_broken_files_refused_with_one_line(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    result = run("annotations", "convert", str(path), str(tmp_path / "out.geojson"))
    assert result.returncode == 2
    assert why in result.stderr and str(path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out.geojson").exists()


def test_huge_files_and_vertex_counts_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = tmp_path / "huge.xml"
    with open(huge, "wb") as handle:
        handle.truncate(annotation_model.MAX_FILE_BYTES + 1)  # sparse: nothing is read
    result = run("annotations", "list", str(huge))
    assert result.returncode == 2 and "limit for an annotation file" in result.stderr
    vertices = "".join(f'<Vertex X="{i}" Y="{i % 7}"/>' for i in range(2000))
    many = tmp_path / "many.xml"
    many.write_text(
        f"<Annotations><Annotation><Regions><Region><Vertices>{vertices}</Vertices></Region></Regions></Annotation></Annotations>"
    )
    assert len(read_annotations(many).regions) == 1
    monkeypatch.setattr(annotation_model, "MAX_VERTICES", 1999)
    with pytest.raises(LimitError, match="more than 1,999 vertices"):
        read_annotations(many)
    features = [{"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[i, i] for i in range(2000)]}}]
    many_json = tmp_path / "many.geojson"
    many_json.write_text(json.dumps(features))
    with pytest.raises(LimitError, match="more than 1,999 vertices"):
        read_annotations(many_json)


def test_cli_and_package_do_not_import_annotation_libraries() -> None:
    """shapely and defusedxml load only when a command is given annotations."""
    code = (
        "import sys, composite; from composite.cli import build_parser; build_parser();"
        " import composite.tools.redact, composite.tools.export;"
        " print([m for m in ('shapely', 'defusedxml', 'composite.annotations') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
