/*
 * cws.js: read a CWS (Composite WebSlide) directory over HTTP and make an OpenSeadragon tile source.
 *
 * Works from any static host: it fetches the INI files itself (no server API needed).
 * Two layouts are understood (see docs/serve.md):
 *  - ours: FinalScan.ini has [Level0]..[LevelN] sections with iZoom, iWidth, iHeight, tIniFile;
 *    each level's blocks are listed in its own INI and placed in that INI's own frame.
 *  - scanner-style: FinalScan.ini (high resolution, often overlapping 752x480 blocks numbered in
 *    serpentine order) and an optional ScanSlide.ini overview, aligned by stage coordinates.
 * Blocks are always placed by their x/y stage coordinates (the centre of the nominal block; larger
 * x is further left, larger y further up), never by their number. A level whose blocks fall on a
 * regular grid is served block-for-tile; any other level is composed per tile on a canvas, later
 * (lower, then further right) blocks on top, gaps white, or the header's tBackgroundColor=R,G,B
 * (blocks left out as glass by --skip-glass).
 * Not supported: focal planes other than the nominal one, INI files other than FinalScan,
 * ScanSlide and the tIniFile names.
 */
(function (global) {
  "use strict";

  const COMPOSED_TILE = 512;
  const BITMAP_CACHE = 48;
  const SAFE_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
  const SAFE_BLOCK = /^[A-Za-z0-9_]+$/;

  /** Sections of a Windows INI: [{name, values}] in file order; keys lower-cased, first one wins. */
  function parseIni(text) {
    const sections = [];
    let current = null;
    for (const raw of text.split(/\r\n|\r|\n/)) {
      const line = raw.trim();
      if (!line || line[0] === ";" || line[0] === "#") continue;
      if (line[0] === "[" && line.endsWith("]")) {
        current = { name: line.slice(1, -1).trim(), values: Object.create(null) };
        sections.push(current);
      } else if (current && line.includes("=")) {
        const at = line.indexOf("=");
        const key = line.slice(0, at).trim().toLowerCase();
        if (!(key in current.values)) current.values[key] = line.slice(at + 1).trim(); // first one wins
      }
    }
    return sections;
  }

  /** A finite number, or null (absent keys and placeholders such as %MAGNIFICATION%). */
  function num(values, key) {
    if (!values || !(key in values)) return null;
    const text = values[key];
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return null;
    const value = Number(text);
    return Number.isFinite(value) ? value : null;
  }

  function section(sections, name) {
    const lower = name.toLowerCase();
    const found = sections.find((s) => s.name.toLowerCase() === lower);
    return found ? found.values : null;
  }

  /** Fetch the first of several URLs that answers 200; null when none does. */
  async function fetchFirst(urls) {
    for (const url of urls) {
      let response;
      try {
        response = await fetch(url);
      } catch (err) {
        continue;
      }
      if (response.ok) return { url: response.url || url, text: await response.text() };
    }
    return null;
  }

  function nameVariants(name) {
    const stem = name.replace(/\.ini$/i, "");
    return [...new Set([name, stem + ".ini", stem + ".INI", stem.toLowerCase() + ".ini", stem.toUpperCase() + ".INI"])];
  }

  async function fetchIni(slideUrl, name) {
    if (!SAFE_FILE.test(name)) throw new Error(`refusing INI name ${JSON.stringify(name)}`);
    const found = await fetchFirst(nameVariants(name).map((n) => new URL(n, slideUrl).href));
    return found ? { url: found.url, sections: parseIni(found.text) } : null;
  }

  /** Stage geometry of one INI: units per pixel, nominal block size, block centres. */
  function stageOf(ini, fallbackHeader) {
    const header = section(ini.sections, "Header") || fallbackHeader || {};
    const blockW = num(header, "iimagewidth");
    const blockH = num(header, "iimageheight");
    const stepX = num(header, "lxstepsize");
    const stepY = num(header, "lystepsize");
    if (!(blockW > 0 && blockH > 0 && stepX > 0 && stepY > 0)) {
      throw new Error(`${ini.url}: [Header] needs iImageWidth, iImageHeight, lXStepSize, lYStepSize`);
    }
    const ext = /^\.[A-Za-z0-9]{1,5}$/.test(header.timagetype || "") ? header.timagetype : ".jpg";
    const blocks = [];
    for (const s of ini.sections) {
      const x = num(s.values, "x");
      const y = num(s.values, "y");
      if (x === null || y === null || s.name.toLowerCase() === "header" || !SAFE_BLOCK.test(s.name)) continue;
      blocks.push({ url: new URL(s.name + ext, ini.url).href, x, y });
    }
    if (!blocks.length) throw new Error(`${ini.url}: no blocks (sections with x= and y=)`);
    let xMax = -Infinity, yMax = -Infinity, xMin = Infinity, yMin = Infinity;
    for (const b of blocks) {
      xMax = Math.max(xMax, b.x); yMax = Math.max(yMax, b.y);
      xMin = Math.min(xMin, b.x); yMin = Math.min(yMin, b.y);
    }
    return { header, blockW, blockH, stepX, stepY, unitX: stepX / blockW, unitY: stepY / blockH, blocks, xMax, yMax, xMin, yMin };
  }

  /** A level: blocks placed in level pixels (left, top), plus a tile layout for OpenSeadragon. */
  function makeLevel(downsample, width, height, blockW, blockH, blocks) {
    const level = { downsample, width, height, blockW, blockH, blocks, cells: null };
    const cells = new Map();
    let regular = blocks.every((b) => {
      if (b.left < 0 || b.top < 0 || b.left % blockW || b.top % blockH) return false;
      const key = `${b.left / blockW},${b.top / blockH}`;
      if (cells.has(key)) return false;
      cells.set(key, b.url);
      return true;
    });
    if (regular) {
      level.cells = cells;
      level.tileWidth = blockW;
      level.tileHeight = blockH;
    } else {
      level.tileWidth = level.tileHeight = COMPOSED_TILE;
      level.buckets = new Map();
      const sorted = blocks.slice().sort((a, b) => a.top - b.top || a.left - b.left);
      sorted.forEach((b, order) => {
        b.order = order;
        const c0 = Math.max(0, Math.floor(b.left / COMPOSED_TILE));
        const r0 = Math.max(0, Math.floor(b.top / COMPOSED_TILE));
        const c1 = Math.floor((b.left + blockW - 1) / COMPOSED_TILE);
        const r1 = Math.floor((b.top + blockH - 1) / COMPOSED_TILE);
        for (let r = r0; r <= r1; r++) {
          for (let c = c0; c <= c1; c++) {
            const key = `${c},${r}`;
            if (!level.buckets.has(key)) level.buckets.set(key, []);
            level.buckets.get(key).push(b);
          }
        }
      });
    }
    return level;
  }

  /** Our layout: [LevelK] sections name each level's INI; each INI is placed in its own frame. */
  async function levelsFromSections(slideUrl, final, levelSections) {
    const levels = [];
    for (const { index, values } of levelSections) {
      const zoom = num(values, "izoom") || Math.pow(4, index);
      const name = values.tinifile || (index === 0 ? null : undefined);
      let ini = final;
      if (name && name.toLowerCase() !== final.url.split("/").pop().toLowerCase()) {
        ini = await fetchIni(slideUrl, name);
        if (!ini) throw new Error(`${new URL(name, slideUrl).href}: level ${index} INI not found`);
      } else if (name === undefined) {
        continue; // a [LevelK] without tIniFile: nothing to show for it
      }
      const stage = stageOf(ini, null);
      const blocks = stage.blocks.map((b) => ({
        url: b.url,
        left: Math.round((stage.xMax - b.x) / stage.unitX),
        top: Math.round((stage.yMax - b.y) / stage.unitY),
      }));
      const width = num(values, "iwidth") || Math.round((stage.xMax - stage.xMin + stage.stepX) / stage.unitX);
      const height = num(values, "iheight") || Math.round((stage.yMax - stage.yMin + stage.stepY) / stage.unitY);
      const blockW = num(values, "iblockwidth") || stage.blockW;
      const blockH = num(values, "iblockheight") || stage.blockH;
      levels.push(makeLevel(zoom, width, height, blockW, blockH, blocks));
    }
    return levels;
  }

  /** Scanner-style: FinalScan.ini is the frame; other INI levels are aligned by stage coordinates. */
  async function levelsFromStage(slideUrl, final) {
    const base = stageOf(final, null);
    const level0 = section(final.sections, "Level0");
    const width = num(level0, "iwidth") || Math.round((base.xMax - base.xMin + base.stepX) / base.unitX);
    const height = num(level0, "iheight") || Math.round((base.yMax - base.yMin + base.stepY) / base.unitY);
    // Stage coordinates of the level-0 canvas's top-left corner (block centres are half a step in).
    const left = base.xMax + base.stepX / 2;
    const top = base.yMax + base.stepY / 2;
    const levels = [];
    for (const ini of [final, await fetchIni(slideUrl, "ScanSlide.ini")]) {
      if (!ini) continue;
      const stage = ini === final ? base : stageOf(ini, null);
      const downsample = stage.unitX / base.unitX;
      if (!(downsample >= 1)) continue;
      const blocks = stage.blocks.map((b) => ({
        url: b.url,
        left: Math.round((left - (b.x + stage.stepX / 2)) / stage.unitX),
        top: Math.round((top - (b.y + stage.stepY / 2)) / stage.unitY),
      }));
      levels.push(makeLevel(downsample, Math.ceil(width / downsample), Math.ceil(height / downsample), stage.blockW, stage.blockH, blocks));
    }
    return levels;
  }

  function mppOf(header) {
    const mpp = num(header, "tmpp");
    if (mpp > 0) return mpp;
    const match = /\|\s*MPP\s*=\s*([0-9.]+)/i.exec(header.tdescription || "");
    if (match && Number(match[1]) > 0) return Number(match[1]);
    const mag = num(header, "dmagnification");
    return mag > 0 ? 10 / mag : null; // 20x is about 0.5 um/px (FORMATS.md 1.4)
  }

  /**
   * Open the CWS directory at slideUrl (a URL ending in "/"): fetch its INI files and return
   * {url, ini, header, mpp, magnification, width, height, layout, levels} with levels sorted from
   * the smallest to full resolution (OpenSeadragon's order).
   */
  async function openSlide(slideUrl, options) {
    const iniName = (options && options.ini) || "FinalScan.ini";
    const final = await fetchIni(slideUrl, iniName);
    if (!final) throw new Error(`${new URL(iniName, slideUrl).href}: not found (is this a CWS directory?)`);
    const header = section(final.sections, "Header") || {};
    const levelSections = final.sections
      .map((s) => ({ match: /^level(\d+)$/i.exec(s.name), values: s.values }))
      .filter((s) => s.match)
      .map((s) => ({ index: Number(s.match[1]), values: s.values }))
      .sort((a, b) => a.index - b.index);
    const ours = levelSections.some((s) => s.values.tinifile);
    let levels = ours ? await levelsFromSections(slideUrl, final, levelSections) : await levelsFromStage(slideUrl, final);
    levels = levels.filter((l) => l.width > 0 && l.height > 0 && l.downsample > 0);
    if (!levels.length) throw new Error(`${final.url}: no level to show`);
    const finest = Math.min(...levels.map((l) => l.downsample));
    for (const l of levels) l.downsample /= finest;
    levels.sort((a, b) => b.downsample - a.downsample);
    const full = levels[levels.length - 1];
    const mag = num(header, "dmagnification");
    const rgb = /^\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*$/.exec(header.tbackgroundcolor || "");
    const background = rgb && rgb.slice(1).every((v) => Number(v) <= 255) ? `rgb(${rgb[1]},${rgb[2]},${rgb[3]})` : "#fff";
    for (const l of levels) l.background = background;
    return {
      url: slideUrl,
      ini: final.url,
      header,
      mpp: mppOf(header),
      magnification: mag > 0 ? mag : null,
      width: full.width,
      height: full.height,
      layout: ours ? "levels" : "scanner",
      background,
      levels,
    };
  }

  /** Decoded blocks shared by neighbouring composed tiles; the least recently used leave first. */
  const bitmaps = new Map();
  function loadBitmap(url) {
    let promise = bitmaps.get(url);
    if (promise) {
      bitmaps.delete(url);
    } else {
      promise = fetch(url)
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`${url}: HTTP ${r.status}`))))
        .then((blob) => createImageBitmap(blob));
      promise.catch(() => bitmaps.delete(url));
    }
    bitmaps.set(url, promise);
    while (bitmaps.size > BITMAP_CACHE) bitmaps.delete(bitmaps.keys().next().value);
    return promise;
  }

  async function composeTile(level, col, row) {
    const x = col * level.tileWidth;
    const y = row * level.tileHeight;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.min(level.tileWidth, Math.ceil(level.width - x)));
    canvas.height = Math.max(1, Math.min(level.tileHeight, Math.ceil(level.height - y)));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = level.background || "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    let blocks;
    if (level.cells) {
      const url = level.cells.get(`${col},${row}`);
      blocks = url ? [{ url, left: x, top: y }] : [];
    } else {
      blocks = (level.buckets.get(`${col},${row}`) || []).slice().sort((a, b) => a.order - b.order);
    }
    const images = await Promise.all(blocks.map((b) => loadBitmap(b.url).catch(() => null)));
    blocks.forEach((b, i) => {
      if (images[i]) ctx.drawImage(images[i], b.left - x, b.top - y);
    });
    return ctx;
  }

  /**
   * An OpenSeadragon tile source over levels (smallest first, each {width, height, tileWidth,
   * tileHeight, downsample}) whose tiles come from ``tile.url(level, col, row)`` and, when
   * ``tile.draw(level, col, row)`` gives a promise of a 2D context instead of a plain download
   * (``tile.drawn(level, col, row)`` says which), from that (tiff.js shares it).
   */
  function pyramidSource(slide, tile) {
    const OSD = global.OpenSeadragon;
    const levels = slide.levels;
    const full = levels[levels.length - 1];
    return new OSD.TileSource({
      width: full.width,
      height: full.height,
      tileWidth: full.tileWidth,
      tileHeight: full.tileHeight,
      tileOverlap: 0,
      minLevel: 0,
      maxLevel: levels.length - 1,
      getLevelScale(level) {
        return levels[level] ? 1 / levels[level].downsample : NaN;
      },
      getTileWidth(level) {
        return levels[level].tileWidth;
      },
      getTileHeight(level) {
        return levels[level].tileHeight;
      },
      getNumTiles(level) {
        const l = levels[level];
        if (!l) return new OSD.Point(0, 0);
        return new OSD.Point(Math.ceil(l.width / l.tileWidth), Math.ceil(l.height / l.tileHeight));
      },
      getTileUrl(level, col, row) {
        return tile.url(level, col, row);
      },
      getTilePostData(level, col, row) {
        return { level, col, row };
      },
      hasTransparency() {
        return false;
      },
      downloadTileStart(job) {
        const { level, col, row } = job.postData;
        if (!tile.drawn(level, col, row)) {
          OSD.TileSource.prototype.downloadTileStart.call(this, job);
          return;
        }
        tile.draw(level, col, row).then(
          (ctx) => job.userData.aborted || job.finish(ctx, null, "context2d"),
          (err) => job.userData.aborted || job.fail(String(err), null),
        );
      },
      downloadTileAbort(job) {
        job.userData.aborted = true;
        OSD.TileSource.prototype.downloadTileAbort.call(this, job);
      },
    });
  }

  /** An OpenSeadragon tile source over the slide's levels (one OSD level per CWS level). */
  function tileSource(slide) {
    const levels = slide.levels;
    const cell = (level, col, row) => levels[level].cells && levels[level].cells.get(`${col},${row}`);
    return pyramidSource(slide, {
      url: (level, col, row) => cell(level, col, row) || `${slide.ini}#composed/${level}/${col}/${row}`,
      drawn: (level, col, row) => !cell(level, col, row),
      draw: (level, col, row) => composeTile(levels[level], col, row),
    });
  }

  global.CWS = { parseIni, openSlide, tileSource, pyramidSource, mppOf, fetchFirst };
})(window);
