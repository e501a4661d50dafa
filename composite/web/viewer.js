/*
 * viewer.js: the page around OpenSeadragon — slide list, slide info, thumbnail/label/macro, scale bar,
 * and the annotation overlay (annotations.js).
 *
 * The slide comes from the page's query string (?slide=path/to/dir/, relative to this page) or
 * from the slide list the composite server publishes at api/slides; on a plain static host that
 * has no such API the list is simply hidden. Everything read from INI files or the API is shown
 * with textContent, never as HTML.
 */
(function (global) {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = { viewer: null, slide: null, listed: [] };

  function message(text) {
    $("message").textContent = text || "";
    $("message").hidden = !text;
  }

  function httpUrl(text, base) {
    const url = new URL(text, base);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`not an http(s) URL: ${text}`);
    return url;
  }

  async function loadList() {
    let slides = [];
    try {
      const response = await fetch(new URL("api/slides", document.baseURI));
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.includes("json")) slides = await response.json();
    } catch (err) {
      slides = [];
    }
    state.listed = Array.isArray(slides) ? slides : [];
    const list = $("slide-list");
    list.textContent = "";
    for (const s of state.listed) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "?slide=" + encodeURIComponent(s.url);
      link.textContent = s.name;
      link.title = s.error ? s.error : s.width && s.height ? `${s.width} x ${s.height} px, ${s.levels} levels` : s.name;
      if (s.error) link.classList.add("failed");
      link.addEventListener("click", (event) => {
        event.preventDefault();
        history.pushState(null, "", link.href);
        open(s.url);
      });
      item.appendChild(link);
      list.appendChild(item);
    }
    $("slides").hidden = state.listed.length === 0;
  }

  function showImages(slide, listed) {
    const header = slide.header;
    const candidates = {
      thumbnail: listed && listed.thumbnail ? [listed.thumbnail] : ["SlideThumb.jpg", "Ss1.jpg"],
      label: listed ? (listed.label ? [listed.label] : []) : header.bhaslabel === "0" ? [] : ["Label.jpg"],
      macro: listed ? (listed.macro ? [listed.macro] : []) : header.bhasmacro === "0" ? [] : ["Macro.jpg"],
    };
    for (const [kind, names] of Object.entries(candidates)) {
      const figure = $(kind);
      const img = figure.querySelector("img");
      figure.hidden = true;
      const base = listed ? document.baseURI : slide.url;
      const urls = names.map((n) => new URL(n, base).href);
      const next = () => {
        const url = urls.shift();
        if (!url) return;
        img.onerror = next;
        img.onload = () => (figure.hidden = false);
        img.src = url;
      };
      next();
    }
  }

  function showInfo(slide) {
    const rows = [
      ["size", `${slide.width} x ${slide.height} px`],
      ["levels", slide.levels.map((l) => `${+l.downsample.toFixed(2)}`).join(", ") + " (downsamples)"],
      ["layout", { levels: "CWS with levels", tiff: "TIFF read by ranges" }[slide.layout] || "scanner-style CWS"],
      ["mpp", slide.mpp ? `${+slide.mpp.toFixed(4)} um/px` : "unknown"],
      ["magnification", slide.magnification ? `${slide.magnification}x` : "unknown"],
    ];
    const table = $("info-table");
    table.textContent = "";
    for (const [key, value] of rows) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = key;
      td.textContent = value;
      tr.append(th, td);
      table.appendChild(tr);
    }
    $("info").hidden = false;
  }

  /** A bar of 1, 2 or 5 x 10^n micrometres, at most 150 screen pixels long. */
  function updateScaleBar() {
    const bar = $("scalebar");
    const viewer = state.viewer;
    const slide = state.slide;
    if (!viewer || !slide || !slide.mpp || !viewer.world.getItemAt(0)) {
      bar.hidden = true;
      return;
    }
    const zoom = viewer.world.getItemAt(0).viewportToImageZoom(viewer.viewport.getZoom(true));
    const micronsPerScreenPixel = slide.mpp / zoom;
    const target = 150 * micronsPerScreenPixel;
    const power = Math.pow(10, Math.floor(Math.log10(target)));
    const length = [5, 2, 1].map((f) => f * power).find((v) => v <= target) || power;
    bar.style.width = `${Math.round(length / micronsPerScreenPixel)}px`;
    bar.textContent = length >= 1000 ? `${+(length / 1000).toPrecision(3)} mm` : `${+length.toPrecision(3)} \u00b5m`;
    bar.hidden = false;
  }

  async function open(slideText) {
    message("");
    // An SVS or TIFF file itself (no trailing slash): read by Range requests (tiff.js).
    const tiff = /\.(svs|tiff?)$/i.test(slideText.split(/[?#]/)[0]);
    let url;
    try {
      url = httpUrl(slideText.endsWith("/") || tiff ? slideText : slideText + "/", document.baseURI);
    } catch (err) {
      message(String(err.message || err));
      return;
    }
    const listed = state.listed.find((s) => new URL(s.url, document.baseURI).href === url.href);
    const reader = tiff ? global.TIFFSlide : global.CWS;
    let slide;
    try {
      slide = await (tiff ? reader.openSlide(url.href) : reader.openSlide(url.href, { ini: listed && listed.ini }));
    } catch (err) {
      message(String(err.message || err));
      return;
    }
    state.slide = slide;
    $("title").textContent = listed ? listed.name : decodeURIComponent(url.pathname.replace(/\/$/, "").split("/").pop());
    document.title = `${$("title").textContent} - composite viewer`;
    showInfo(slide);
    if (tiff) for (const kind of ["thumbnail", "label", "macro"]) $(kind).hidden = true;
    else showImages(slide, listed);
    state.viewer.open(reader.tileSource(slide));
    if (!tiff) global.CWSAnnotations.loadFor(url.href, listed);
  }

  function createViewer() {
    const viewer = global.OpenSeadragon({
      id: "viewer",
      prefixUrl: "vendor/openseadragon/images/",
      drawer: ["webgl", "canvas"],
      showNavigator: true,
      navigatorPosition: "TOP_RIGHT",
      maxZoomPixelRatio: 4,
      visibilityRatio: 0.5,
      blendTime: 0,
      crossOriginPolicy: "Anonymous",
      timeout: 60000,
    });
    // A control, so the bar stays in the viewer's bottom-left corner whatever the page layout.
    viewer.addControl($("scalebar"), { anchor: global.OpenSeadragon.ControlAnchor.BOTTOM_LEFT, autoFade: false });
    viewer.addHandler("animation", updateScaleBar);
    viewer.addHandler("open", updateScaleBar);
    viewer.addHandler("resize", updateScaleBar);
    viewer.addHandler("open-failed", (event) => message(`could not open the slide: ${event.message}`));
    return viewer;
  }

  /** Show level-0 pixels [x0, x0 + w) x [y0, y0 + h) across the viewer (used by the tests). */
  function showRegion(x0, y0, w, h) {
    const item = state.viewer.world.getItemAt(0);
    state.viewer.viewport.fitBounds(item.imageToViewportRectangle(x0, y0, w, h), true);
    state.viewer.forceRedraw();
  }

  /** Resolves once every tile the current view needs has been drawn. */
  function whenLoaded() {
    return new Promise((resolve) => {
      let stable = 0;
      const check = () => {
        const item = state.viewer.world.getItemAt(0);
        stable = item && item.getFullyLoaded() && !state.viewer.world.needsDraw() ? stable + 1 : 0;
        if (stable >= 3) resolve(true);
        else setTimeout(check, 50);
      };
      setTimeout(check, 50);
    });
  }

  async function main() {
    state.viewer = createViewer();
    global.CWSAnnotations.attach(state.viewer);
    const listLoaded = loadList();
    const params = new URLSearchParams(location.search);
    await listLoaded;
    const first = state.listed.find((s) => !s.error);
    const requested = params.get("slide") || (first && first.url);
    if (requested) await open(requested);
    else message("No slide: add ?slide=path/to/slide/ to this page's address, or serve slides with wsi-composite serve.");
    window.addEventListener("popstate", () => {
      const slide = new URLSearchParams(location.search).get("slide");
      if (slide) open(slide);
    });
  }

  global.cwsViewer = {
    get viewer() {
      return state.viewer;
    },
    get slide() {
      return state.slide;
    },
    open,
    annotations: global.CWSAnnotations,
    showRegion,
    whenLoaded,
    ready: null,
  };
  global.cwsViewer.ready = main();
})(window);
