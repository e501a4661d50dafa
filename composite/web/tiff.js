/*
 * An Aperio SVS or pyramidal TIFF read straight from a static host with HTTP Range requests, as an
 * OpenSeadragon tile source: no server code, no conversion.
 *
 * The header and the IFDs are read with Range requests (classic TIFF and BigTIFF, either byte
 * order); every tiled JPEG page is a level (level 0 the first, the others the smaller tiled pages:
 * Aperio's pyramid pages and generic TIFFs' reduced-resolution pages alike); stripped pages
 * (thumbnail, label, macro) are skipped. A tile is fetched by its byte range and made a standalone
 * JPEG the browser decodes: the page's JPEGTables merged in and, for Photometric RGB (Aperio's
 * tiles: RGB samples with no colour marker), an Adobe APP14 marker with transform 0 added, so the
 * browser does not read RGB samples as YCbCr (docs/formats.md 3.5, the CWS writer's rule).
 *
 * Not supported: compressions other than JPEG (JPEG 2000, LZW: an error is shown), SubIFD pyramids
 * (OME-TIFF), hosts without Range support for files larger than 64 MB.
 */
(function (global) {
  "use strict";

  const TAG = {
    subfile: 254,
    width: 256,
    height: 257,
    compression: 259,
    photometric: 262,
    description: 270,
    tileWidth: 322,
    tileHeight: 323,
    tileOffsets: 324,
    tileCounts: 325,
    jpegTables: 347,
  };
  const TYPE_SIZE = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 16: 8, 17: 8, 18: 8 };
  const MAX_IFDS = 64;
  const WHOLE_FILE_LIMIT = 64 * 1024 * 1024;
  const ADOBE_RGB = [0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00];

  /** Bytes [start, end) of the file at url, by a Range request (or from the whole file once). */
  function rangeReader(url) {
    let whole = null;
    return async function read(start, end) {
      if (whole) return new Uint8Array(await whole).slice(start, end);
      const response = await fetch(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
      if (response.status === 206) return new Uint8Array(await response.arrayBuffer());
      if (response.status !== 200) throw new Error(`${url}: HTTP ${response.status}`);
      const size = Number(response.headers.get("Content-Length") || 0);
      if (size > WHOLE_FILE_LIMIT) throw new Error(`${url}: the host ignores Range requests`);
      whole = response.arrayBuffer();
      return new Uint8Array(await whole).slice(start, end);
    };
  }

  function numbers(bytes, little, type, count) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = [];
    for (let i = 0; i < count; i++) {
      if (type === 3) out.push(view.getUint16(i * 2, little));
      else if (type === 4) out.push(view.getUint32(i * 4, little));
      else if (type === 16 || type === 18) out.push(Number(view.getBigUint64(i * 8, little)));
      else out.push(bytes[i]);
    }
    return out;
  }

  async function readIfd(read, offset, little, big) {
    const countSize = big ? 8 : 2;
    const entrySize = big ? 20 : 12;
    const head = await read(offset, offset + countSize);
    const view = new DataView(head.buffer);
    const count = big ? Number(view.getBigUint64(0, little)) : view.getUint16(0, little);
    if (count > 4096) throw new Error(`IFD at ${offset}: ${count} entries`);
    const pointerSize = big ? 8 : 4;
    const body = await read(offset + countSize, offset + countSize + count * entrySize + pointerSize);
    const bodyView = new DataView(body.buffer);
    const tags = new Map();
    for (let i = 0; i < count; i++) {
      const at = i * entrySize;
      const tag = bodyView.getUint16(at, little);
      const type = bodyView.getUint16(at + 2, little);
      const n = big ? Number(bodyView.getBigUint64(at + 4, little)) : bodyView.getUint32(at + 4, little);
      const valueAt = at + (big ? 12 : 8);
      tags.set(tag, { type, count: n, inline: body.slice(valueAt, valueAt + pointerSize), valueAt });
    }
    const nextAt = count * entrySize;
    const next = big ? Number(bodyView.getBigUint64(nextAt, little)) : bodyView.getUint32(nextAt, little);
    const wanted = [TAG.tileOffsets, TAG.tileCounts, TAG.jpegTables, TAG.description];
    const value = async (tag) => {
      const entry = tags.get(tag);
      if (!entry) return null;
      const size = (TYPE_SIZE[entry.type] || 1) * entry.count;
      let bytes = entry.inline;
      if (size > pointerSize) {
        const where = numbers(entry.inline, little, big ? 16 : 4, 1)[0];
        bytes = await read(where, where + size);
      }
      if (entry.type === 2) return new TextDecoder("latin1").decode(bytes.slice(0, entry.count)).replace(/\0+$/, "");
      if (entry.type === 7 || entry.type === 1) return bytes.slice(0, entry.count);
      return numbers(bytes, little, entry.type, entry.count);
    };
    const page = { next };
    for (const [name, tag] of Object.entries(TAG)) {
      if (!wanted.includes(tag)) {
        const v = await value(tag);
        page[name] = v ? v[0] : null;
      }
    }
    page.tiled = tags.has(TAG.tileOffsets);
    page.lazy = { offsets: () => value(TAG.tileOffsets), counts: () => value(TAG.tileCounts) };
    page.jpegTables = await value(TAG.jpegTables);
    page.description = (await value(TAG.description)) || "";
    return page;
  }

  /** Open the TIFF at url: {url, width, height, mpp, magnification, layout: "tiff", levels}. */
  async function openSlide(url) {
    const read = rangeReader(url);
    const head = await read(0, 16);
    const order = String.fromCharCode(head[0], head[1]);
    if (order !== "II" && order !== "MM") throw new Error(`${url}: not a TIFF file`);
    const little = order === "II";
    const view = new DataView(head.buffer);
    const magic = view.getUint16(2, little);
    const big = magic === 43;
    if (magic !== 42 && !big) throw new Error(`${url}: not a TIFF file`);
    let offset = big ? Number(view.getBigUint64(8, little)) : view.getUint32(4, little);
    const pages = [];
    const seen = new Set();
    while (offset && !seen.has(offset) && pages.length < MAX_IFDS) {
      seen.add(offset);
      const page = await readIfd(read, offset, little, big);
      pages.push(page);
      offset = page.next;
    }
    const tiled = pages.filter((p) => p.tiled && p.width && p.height && p.tileWidth && p.tileHeight);
    if (!tiled.length) throw new Error(`${url}: no tiled page`);
    const base = tiled[0];
    const levels = [];
    for (const page of tiled) {
      if (page !== base && (page.width >= base.width || Math.abs(page.width / page.height - base.width / base.height) > 0.02))
        continue; // not a reduced copy of level 0
      if (page.compression !== 7) throw new Error(`${url}: tiles with compression ${page.compression} (only JPEG is shown)`);
      const [offsets, counts] = await Promise.all([page.lazy.offsets(), page.lazy.counts()]);
      levels.push({
        width: page.width,
        height: page.height,
        tileWidth: page.tileWidth,
        tileHeight: page.tileHeight,
        downsample: (base.width / page.width + base.height / page.height) / 2,
        offsets,
        counts,
        tables: page.jpegTables,
        rgb: page.photometric === 2,
        read,
      });
    }
    levels.sort((a, b) => b.downsample - a.downsample);
    const mpp = /\|\s*MPP\s*=\s*([0-9.]+)/i.exec(base.description);
    const mag = /\|\s*AppMag\s*=\s*([0-9.]+)/i.exec(base.description);
    return {
      url,
      ini: url,
      header: { bhaslabel: "0", bhasmacro: "0" },
      mpp: mpp && Number(mpp[1]) > 0 ? Number(mpp[1]) : null,
      magnification: mag && Number(mag[1]) > 0 ? Number(mag[1]) : null,
      width: base.width,
      height: base.height,
      layout: "tiff",
      background: "#fff",
      levels,
    };
  }

  /** A standalone JPEG from an abbreviated tile: SOI, [Adobe RGB], tables, the tile after its SOI. */
  function standalone(tile, tables, rgb) {
    const parts = [new Uint8Array([0xff, 0xd8])];
    if (rgb) parts.push(new Uint8Array(ADOBE_RGB));
    if (tables && tables.length > 4) parts.push(tables.subarray(2, tables.length - 2));
    parts.push(tile.subarray(2));
    return new Blob(parts, { type: "image/jpeg" });
  }

  async function tileContext(level, col, row) {
    const cols = Math.ceil(level.width / level.tileWidth);
    const index = row * cols + col;
    const start = level.offsets[index];
    const count = level.counts[index];
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.min(level.tileWidth, level.width - col * level.tileWidth));
    canvas.height = Math.max(1, Math.min(level.tileHeight, level.height - row * level.tileHeight));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (count > 0) {
      const bytes = await level.read(start, start + count);
      const bitmap = await createImageBitmap(standalone(bytes, level.tables, level.rgb));
      ctx.drawImage(bitmap, 0, 0); // padded edge tiles: the canvas keeps the part inside the image
    }
    return ctx;
  }

  function tileSource(slide) {
    return global.CWS.pyramidSource(slide, {
      url: (level, col, row) => `${slide.url}#tile/${level}/${col}/${row}`,
      drawn: () => true,
      draw: (level, col, row) => tileContext(slide.levels[level], col, row),
    });
  }

  global.TIFFSlide = { openSlide, tileSource, standalone };
})(window);
