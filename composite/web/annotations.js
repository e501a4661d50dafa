/*
 * annotations.js: draw a slide's annotations (QuPath GeoJSON or Aperio ImageScope XML) over the viewer.
 *
 * Where they come from: the URL the slide list gives (api/slides' "annotations"), else
 * annotations.geojson or annotations.xml inside the slide's directory (so a plain static host
 * works too), or a file dropped onto the page. Coordinates are level-0 pixels (docs/annotations.md);
 * one SVG over the viewer is transformed to follow the image, strokes keep their screen width.
 * Names show on hover (hit-tested here, so the SVG never takes the mouse from panning); the
 * sidebar's checkbox (or the "a" key) toggles the overlay.
 *
 * Files are untrusted: XML with a DOCTYPE is refused (no entities), sizes and vertex counts are
 * bounded, and every name is shown with textContent.
 */
(function (global) {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const MAX_BYTES = 64 * 1024 * 1024;
  const MAX_VERTICES = 2000000;
  const PALETTE = ["#e53935", "#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00acc1", "#6d4c41", "#c0ca33"];
  const state = { viewer: null, svg: null, layer: null, tip: null, regions: [], visible: true, source: "", loading: "" };

  function colorref(value) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffff) return null;
    return [n & 255, (n >> 8) & 255, (n >> 16) & 255];
  }

  function rgb(color) {
    return Array.isArray(color) && color.length >= 3 && color.slice(0, 3).every((v) => Number.isInteger(v) && v >= 0 && v <= 255)
      ? `rgb(${color[0]}, ${color[1]}, ${color[2]})`
      : null;
  }

  function finite(value, what) {
    const n = Number(value);
    if (!Number.isFinite(n) || Math.abs(n) > 1e8) throw new Error(`${what}: coordinate ${value} is not a pixel position`);
    return n;
  }

  function ellipse(x0, y0, x1, y1) {
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, a = Math.abs(x1 - x0) / 2, b = Math.abs(y1 - y0) / 2;
    const ring = [];
    for (let k = 0; k < 64; k++) ring.push([cx + a * Math.cos((2 * Math.PI * k) / 64), cy + b * Math.sin((2 * Math.PI * k) / 64)]);
    return ring;
  }

  /** Regions of an ImageScope XML document: {name, cls, color, kind, rings (polygons: holes too), points, lines}. */
  function parseImageScope(text, source) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    if (doc.getElementsByTagName("parsererror").length) throw new Error(`${source}: not well-formed XML`);
    if (doc.doctype) throw new Error(`${source}: declares a DTD; entities are refused in annotation files`);
    const regions = [];
    let vertices = 0;
    for (const layer of doc.getElementsByTagName("Annotation")) {
      const cls = layer.getAttribute("Name") || "";
      const color = colorref(layer.getAttribute("LineColor"));
      const positives = [];
      const negatives = [];
      for (const region of layer.getElementsByTagName("Region")) {
        const points = [];
        for (const v of region.getElementsByTagName("Vertex")) {
          if (++vertices > MAX_VERTICES) throw new Error(`${source}: more than ${MAX_VERTICES} vertices`);
          points.push([finite(v.getAttribute("X"), source), finite(v.getAttribute("Y"), source)]);
        }
        if (!points.length) continue;
        const type = region.getAttribute("Type") || "0";
        const name = region.getAttribute("Text") || "";
        if (type === "5" || points.length === 1) {
          regions.push({ name, cls, color, kind: "point", rings: [], lines: [], points });
        } else if (type === "3" || type === "4" || (points.length === 2 && type !== "1" && type !== "2")) {
          regions.push({ name, cls, color, kind: "line", rings: [], lines: [points], points: [] });
        } else {
          let ring = points;
          if (type === "1" || type === "2") {
            const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
            const [x0, y0, x1, y1] = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
            ring = type === "2" ? ellipse(x0, y0, x1, y1) : [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
          }
          const item = { name, cls, color, kind: "polygon", rings: [ring], lines: [], points: [] };
          (region.getAttribute("NegativeROA") === "1" ? negatives : positives).push(item);
        }
      }
      for (const hole of negatives) {
        const [x, y] = hole.rings[0][0];
        const owner = positives.find((p) => inside(p.rings, x, y));
        if (owner) owner.rings.push(hole.rings[0]);
      }
      regions.push(...positives);
    }
    return regions;
  }

  /** Regions of QuPath GeoJSON (FeatureCollection, a Feature, or a list of features). */
  function parseGeoJson(text, source) {
    const data = JSON.parse(text);
    const features = Array.isArray(data) ? data : data && data.type === "FeatureCollection" ? data.features : data && data.type === "Feature" ? [data] : null;
    if (!Array.isArray(features)) throw new Error(`${source}: not GeoJSON annotations`);
    let vertices = 0;
    const position = (p) => {
      if (!Array.isArray(p) || p.length < 2) throw new Error(`${source}: a position is not [x, y]`);
      if (++vertices > MAX_VERTICES) throw new Error(`${source}: more than ${MAX_VERTICES} vertices`);
      return [finite(p[0], source), finite(p[1], source)];
    };
    const list = (node) => {
      if (!Array.isArray(node)) throw new Error(`${source}: coordinates nested wrongly`);
      return node;
    };
    const regions = [];
    for (const feature of features) {
      const geometry = feature && feature.geometry;
      if (!geometry) continue;
      const props = (feature.properties && typeof feature.properties === "object" && feature.properties) || {};
      const klass = props.classification;
      const cls = typeof klass === "string" ? klass : klass && typeof klass.name === "string" ? klass.name
        : klass && Array.isArray(klass.names) ? klass.names.filter((n) => typeof n === "string").join(": ") : "";
      const color = (klass && rgb(klass.color) && klass.color) || (rgb(props.color) && props.color) || null;
      const name = typeof props.name === "string" ? props.name : "";
      const region = { name, cls, color, kind: "polygon", rings: [], lines: [], points: [] };
      const c = geometry.coordinates;
      switch (geometry.type) {
        case "Polygon": region.rings = list(c).map((r) => list(r).map(position)); break;
        case "MultiPolygon": region.rings = list(c).flatMap((poly) => list(poly).map((r) => list(r).map(position))); break;
        case "LineString": region.kind = "line"; region.lines = [list(c).map(position)]; break;
        case "MultiLineString": region.kind = "line"; region.lines = list(c).map((l) => list(l).map(position)); break;
        case "Point": region.kind = "point"; region.points = [position(c)]; break;
        case "MultiPoint": region.kind = "point"; region.points = list(c).map(position); break;
        default: throw new Error(`${source}: geometry ${String(geometry.type)} is not supported`);
      }
      regions.push(region);
    }
    return regions;
  }

  function parse(text, source) {
    if (text.length > MAX_BYTES) throw new Error(`${source}: over ${MAX_BYTES / 1048576} MB, too large to draw`);
    const head = text.replace(/^\uFEFF/, "").trimStart();
    if (head.startsWith("<")) return parseImageScope(text, source);
    if (head.startsWith("{") || head.startsWith("[")) return parseGeoJson(text, source);
    throw new Error(`${source}: neither ImageScope XML nor GeoJSON`);
  }

  /** Even-odd point-in-polygon over all rings of a region. */
  function inside(rings, x, y) {
    let hit = false;
    for (const ring of rings) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [xi, yi] = ring[i], [xj, yj] = ring[j];
        if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
      }
    }
    return hit;
  }

  function bounds(region) {
    const all = [...region.rings.flat(), ...region.lines.flat(), ...region.points];
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  }

  function classColor(region, classes) {
    const given = rgb(region.color);
    if (given) return given;
    if (!classes.has(region.cls)) classes.set(region.cls, PALETTE[classes.size % PALETTE.length]);
    return classes.get(region.cls);
  }

  function pathData(rings, close) {
    return rings.map((r) => "M" + r.map((p) => `${p[0]},${p[1]}`).join("L") + (close ? "Z" : "")).join("");
  }

  function draw() {
    const layer = state.layer;
    layer.textContent = "";
    const classes = new Map();
    for (const region of state.regions) {
      region.colour = classColor(region, classes);
      region.box = bounds(region);
      const group = document.createElementNS(SVG, "g");
      group.setAttribute("class", "annotation");
      group.setAttribute("stroke", region.colour);
      if (region.rings.length) {
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("d", pathData(region.rings, true));
        path.setAttribute("fill", region.colour);
        path.setAttribute("fill-opacity", "0.12");
        path.setAttribute("fill-rule", "evenodd");
        group.appendChild(path);
      }
      if (region.lines.length) {
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("d", pathData(region.lines, false));
        path.setAttribute("fill", "none");
        group.appendChild(path);
      }
      for (const [x, y] of region.points) {
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("cx", x);
        dot.setAttribute("cy", y);
        dot.setAttribute("fill", region.colour);
        dot.setAttribute("class", "annotation-point");
        group.appendChild(dot);
      }
      region.element = group;
      layer.appendChild(group);
    }
    showLegend(classes);
    update();
  }

  function showLegend(classes) {
    const section = document.getElementById("annotations");
    if (!section) return;
    section.hidden = state.regions.length === 0;
    document.getElementById("annotations-count").textContent = `${state.regions.length} from ${state.source}`;
    const list = document.getElementById("annotation-classes");
    list.textContent = "";
    const counts = new Map();
    for (const r of state.regions) counts.set(r.cls, (counts.get(r.cls) || 0) + 1);
    for (const [cls, count] of counts) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = classes.get(cls) || rgb(state.regions.find((r) => r.cls === cls).color) || "#888";
      item.append(swatch, document.createTextNode(`${cls || "(no class)"}: ${count}`));
      list.appendChild(item);
    }
  }

  /** Follow the image: level-0 pixel (x, y) -> viewer element pixel. */
  function update() {
    const viewer = state.viewer;
    const item = viewer && viewer.world.getItemAt(0);
    if (!item || !state.svg) return;
    const origin = item.imageToViewerElementCoordinates(new global.OpenSeadragon.Point(0, 0));
    const unit = item.imageToViewerElementCoordinates(new global.OpenSeadragon.Point(1, 0)).x - origin.x;
    state.scale = unit;
    state.layer.setAttribute("transform", `translate(${origin.x} ${origin.y}) scale(${unit})`);
    for (const dot of state.layer.querySelectorAll("circle")) dot.setAttribute("r", 5 / unit);
    state.svg.style.display = state.visible && state.regions.length ? "" : "none";
  }

  function hit(x, y) {
    const slack = 4 / (state.scale || 1);
    for (let i = state.regions.length - 1; i >= 0; i--) {
      const r = state.regions[i];
      const [x0, y0, x1, y1] = r.box;
      if (x < x0 - slack || x > x1 + slack || y < y0 - slack || y > y1 + slack) continue;
      if (r.rings.length ? inside(r.rings, x, y) : true) return r;
    }
    return null;
  }

  function hover(position) {
    const item = state.viewer.world.getItemAt(0);
    const tip = state.tip;
    const at = item ? item.viewerElementToImageCoordinates(position) : null;
    const region = state.visible && at ? hit(at.x, at.y) : null;
    for (const r of state.regions) r.element.classList.toggle("hover", r === region);
    if (!region) {
      tip.hidden = true;
      return;
    }
    tip.textContent = [region.name, region.cls].filter(Boolean).join(" \u2014 ") || `(${region.kind})`;
    tip.style.left = `${position.x + 14}px`;
    tip.style.top = `${position.y + 14}px`;
    tip.hidden = false;
  }

  function setVisible(visible) {
    state.visible = visible;
    const box = document.getElementById("annotations-toggle");
    if (box) box.checked = visible;
    if (!visible && state.tip) state.tip.hidden = true;
    update();
  }

  function show(regions, source) {
    state.regions = regions;
    state.source = source;
    draw();
  }

  function report(error) {
    const message = document.getElementById("message");
    message.textContent = String(error.message || error);
    message.hidden = false;
  }

  /** Load the slide's annotations: the listed URL, else annotations.geojson / .xml in its directory. */
  async function loadFor(slideUrl, listed) {
    show([], "");
    state.loading = slideUrl;
    const urls = listed ? (listed.annotations ? [new URL(listed.annotations, document.baseURI).href] : [])
      : ["annotations.geojson", "annotations.xml"].map((n) => new URL(n, slideUrl).href);
    const found = await global.CWS.fetchFirst(urls);
    if (!found || state.loading !== slideUrl) return; // none, or another slide opened meanwhile
    const name = decodeURIComponent(new URL(found.url).pathname.split("/").pop());
    try {
      show(parse(found.text, name), name);
    } catch (err) {
      report(err);
    }
  }

  function attach(viewer) {
    state.viewer = viewer;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("id", "annotation-overlay");
    state.layer = document.createElementNS(SVG, "g");
    svg.appendChild(state.layer);
    viewer.canvas.appendChild(svg);
    state.svg = svg;
    const tip = document.createElement("div");
    tip.id = "annotation-tip";
    tip.hidden = true;
    viewer.canvas.appendChild(tip);
    state.tip = tip;
    for (const event of ["open", "animation", "update-viewport", "resize"]) viewer.addHandler(event, update);
    new global.OpenSeadragon.MouseTracker({
      element: viewer.canvas,
      moveHandler: (event) => hover(event.position),
      leaveHandler: () => (tip.hidden = true),
    });
    const toggle = document.getElementById("annotations-toggle");
    if (toggle) toggle.addEventListener("change", () => setVisible(toggle.checked));
    document.addEventListener("keydown", (event) => {
      if (event.key === "a" && !event.ctrlKey && !event.metaKey && !event.altKey && event.target === document.body) setVisible(!state.visible);
    });
    document.addEventListener("dragover", (event) => event.preventDefault());
    document.addEventListener("drop", async (event) => {
      event.preventDefault();
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (!file) return;
      try {
        if (file.size > MAX_BYTES) throw new Error(`${file.name}: over ${MAX_BYTES / 1048576} MB, too large to draw`);
        show(parse(await file.text(), file.name), file.name);
        setVisible(true);
      } catch (err) {
        report(err);
      }
    });
  }

  global.CWSAnnotations = {
    attach,
    loadFor,
    parse,
    setVisible,
    get regions() {
      return state.regions;
    },
    get visible() {
      return state.visible;
    },
    get source() {
      return state.source;
    },
  };
})(window);
