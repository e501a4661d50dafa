"""Annotation files as ImageScope and QuPath write them, built by hand from their documented layouts.

IMAGESCOPE_XML has every region type ImageScope writes (freehand/polygon 0, rectangle 1, ellipse 2,
arrow 3, ruler 4, point 5), two layers, a negative region (a hole) and ImageScope's attribute
headers and plots, which a reader must skip. QUPATH_GEOJSON is a QuPath 0.4 FeatureCollection
(Polygon with a hole, MultiPolygon with holes, Point, classification colours, a derived class);
QUPATH_02_GEOJSON the bare list of features QuPath 0.2 wrote, with its packed ``colorRGB``.
Coordinates fit the 3000 x 2200 synthetic slide of conftest.py.
"""

from __future__ import annotations

import json

IMAGESCOPE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.250000">
  <Annotation Id="1" Name="Tumour" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" Type="4"
              LineColor="255" Visible="1" Selected="1" MarkupImagePath="" MacroName="">
    <Attributes>
      <Attribute Name="Description" Id="0" Value=""/>
    </Attributes>
    <Regions>
      <RegionAttributeHeaders>
        <AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
        <AttributeHeader Id="9997" Name="Length" ColumnWidth="-1"/>
        <AttributeHeader Id="9996" Name="Area" ColumnWidth="-1"/>
        <AttributeHeader Id="9998" Name="Text" ColumnWidth="-1"/>
      </RegionAttributeHeaders>
      <Region Id="1" Type="0" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" Length="3000" Area="600000"
              LengthMicrons="750" AreaMicrons="37500"
              Text="T1" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="1">
        <Attributes/>
        <Vertices>
          <Vertex X="310.5" Y="250" Z="0"/>
          <Vertex X="1290" Y="330.25" Z="0"/>
          <Vertex X="1160" Y="1090" Z="0"/>
          <Vertex X="700" Y="850" Z="0"/>
          <Vertex X="420" Y="990" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="2" Type="0" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" Length="700" Area="30000"
              LengthMicrons="175" AreaMicrons="1875"
              Text="" NegativeROA="1" InputRegionId="0" Analyze="1" DisplayId="2">
        <Attributes/>
        <Vertices>
          <Vertex X="600" Y="450" Z="0"/>
          <Vertex X="900" Y="480" Z="0"/>
          <Vertex X="820" Y="700" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="3" Type="2" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" Length="2000" Area="300000"
              LengthMicrons="500" AreaMicrons="18750"
              Text="E1" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="3">
        <Attributes/>
        <Vertices>
          <Vertex X="1700" Y="900" Z="0"/>
          <Vertex X="2400.5" Y="1500" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="4" Type="3" Zoom="0.5" Selected="0" ImageLocation="" ImageFocus="-1" Length="100" Area="0"
              LengthMicrons="25" AreaMicrons="0"
              Text="look here" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="4">
        <Attributes/>
        <Vertices>
          <Vertex X="2000" Y="200" Z="0"/>
          <Vertex X="2100" Y="260" Z="0"/>
        </Vertices>
      </Region>
    </Regions>
    <Plots/>
  </Annotation>
  <Annotation Id="2" Name="Stroma" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" Type="4"
              LineColor="16711680" Visible="1" Selected="0" MarkupImagePath="" MacroName="">
    <Attributes>
      <Attribute Name="Description" Id="0" Value=""/>
    </Attributes>
    <Regions>
      <RegionAttributeHeaders>
        <AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
      </RegionAttributeHeaders>
      <Region Id="1" Type="1" Zoom="1" Selected="0" ImageLocation="" ImageFocus="-1" Length="1000" Area="60000"
              LengthMicrons="250" AreaMicrons="3750"
              Text="S1" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="1">
        <Attributes/>
        <Vertices>
          <Vertex X="2500" Y="1700" Z="0"/>
          <Vertex X="2900" Y="1700" Z="0"/>
          <Vertex X="2900" Y="2050" Z="0"/>
          <Vertex X="2500" Y="2050" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="2" Type="4" Zoom="1" Selected="0" ImageLocation="" ImageFocus="-1" Length="500" Area="0"
              LengthMicrons="125" AreaMicrons="0" Text="" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="2">
        <Attributes/>
        <Vertices>
          <Vertex X="100" Y="2000" Z="0"/>
          <Vertex X="600" Y="2000" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="3" Type="5" Zoom="1" Selected="0" ImageLocation="" ImageFocus="-1" Length="0" Area="0"
              LengthMicrons="0" AreaMicrons="0"
              Text="mitosis" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="3">
        <Attributes/>
        <Vertices>
          <Vertex X="1500" Y="1800" Z="0"/>
        </Vertices>
      </Region>
    </Regions>
    <Plots/>
  </Annotation>
</Annotations>
"""

TUMOUR_RING = [[200.0, 1300.0], [1200.0, 1250.0], [1300.0, 2000.0], [250.0, 2100.0], [200.0, 1300.0]]
TUMOUR_HOLE = [[500.0, 1500.0], [800.0, 1500.0], [800.0, 1800.0], [500.0, 1800.0], [500.0, 1500.0]]

QUPATH_FEATURES = [
    {
        "type": "Feature",
        "id": "0b4ad5c2-2b8f-4a56-9b55-1f7f0a7e8c11",
        "geometry": {"type": "Polygon", "coordinates": [TUMOUR_RING, TUMOUR_HOLE]},
        "properties": {
            "objectType": "annotation",
            "name": "tumour A",
            "classification": {"name": "Tumor", "color": [200, 0, 0]},
            "isLocked": False,
        },
    },
    {
        "type": "Feature",
        "id": "5e2c1f0b-9d1e-4c7a-8e3f-2a1b0c9d8e7f",
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [
                [
                    [[1600, 200], [2300, 200], [2300, 700], [1600, 700], [1600, 200]],
                    [[1800, 300], [2000, 300], [2000, 500], [1800, 500], [1800, 300]],
                ],
                [[[2500, 300], [2900, 250], [2850, 800], [2500, 300]]],
            ],
        },
        "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [0, 150, 0]}},
    },
    {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [1500.5, 900.25]},
        "properties": {
            "objectType": "annotation",
            "name": "mitosis",
            "classification": {"names": ["Tumor", "Mitosis"]},
        },
    },
]
QUPATH_GEOJSON = json.dumps({"type": "FeatureCollection", "features": QUPATH_FEATURES}, indent=2)
QUPATH_02_GEOJSON = json.dumps(
    [
        {
            "type": "Feature",
            "id": "PathAnnotationObject",
            "geometry": {"type": "Polygon", "coordinates": [TUMOUR_RING]},
            "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}, "isLocked": False},
        }
    ]
)
