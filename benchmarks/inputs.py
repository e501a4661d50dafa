"""What the benchmark jobs read, made once and cached under benchmarks/cache/ (gitignored).

- the synthetic H&E-like SVS (streaming writer in composite.synthetic);
- benchmarks/.venv-vips: pyvips + pyvips-binary 8.18, so the peer is the newest libvips, not
  whatever the system has; benchmarks/.venv-wsidicomizer: wsidicomizer, the SVS -> DICOM peer;
- the 752x480-block CWS our converter makes from the SVS (input of the CWS -> SVS jobs), or, while
  our converter has no CWS writer yet, stand-in 752x480 JPEG blocks so the libvips assembly peer
  can still be measured;
- ``blocks.json``: those blocks' files in row-major order for libvips' arrayjoin.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np

from composite import codecs, synthetic, synthetic_glass

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
VIPS_VENV = HERE / ".venv-vips"
VIPS_REQUIREMENTS = ("pyvips>=3.0,<4", "pyvips-binary>=8.18,<8.19")
# the peer of SVS -> DICOM; 0.26.1 is its newest release for Python 3.11 (0.27+ need 3.12)
WSIDICOMIZER_VENV = HERE / ".venv-wsidicomizer"
WSIDICOMIZER_REQUIREMENTS = ("wsidicomizer==0.26.1",)
BLOCK = (752, 480)  # the Bacus scanners' block size
QUALITY = 80


def synthetic_slide(width: int, height: int) -> Path:
    """The cached slide; its name carries a hash of the generator, so a changed generator remakes it."""
    version = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:8]
    path = CACHE / f"synthetic-{width}x{height}-{version}.svs"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"making {path.name} (cached for later runs) ...", flush=True)
        synthetic.write_synthetic_slide(path, width=width, height=height, tile_size=240, quality=QUALITY, stamp=False)
    return path


def glass_slide(width: int, height: int) -> Path:
    """The cached glass slide: tissue pieces on 35% of the area, on shaded glass with dust and pale
    fat (composite.synthetic_glass); remade when either generator changes."""
    sources = Path(synthetic.__file__).read_bytes() + Path(synthetic_glass.__file__).read_bytes()
    path = CACHE / f"glass-{width}x{height}-{hashlib.sha256(sources).hexdigest()[:8]}.svs"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"making {path.name} (cached for later runs) ...", flush=True)
        scene = synthetic_glass.GlassScene(width=width, height=height, tissue=0.35)
        synthetic.write_synthetic_slide(
            path, width=width, height=height, tile_size=240, quality=QUALITY, stamp=False, scene=scene
        )
    return path


def wsi_composite() -> list[str]:
    """Our CLI, from the interpreter running the harness (the project's .venv)."""
    script = Path(sys.executable).with_name("wsi-composite")
    return [str(script)] if script.exists() else [sys.executable, "-m", "composite"]


def converter_targets() -> set[str]:
    """The formats ``wsi-composite convert`` can write today ({} while the command is missing)."""
    done = subprocess.run([*wsi_composite(), "convert", "--help"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return set()
    # The usage line lists them: "[--to svs|tiff|cws]".
    found = re.search(r"--to \{?([\w|,]+)", done.stdout)
    return set(re.split(r"[|,]", found.group(1).lower())) if found else set()


def vips_python() -> Path | None:
    """The vips venv's interpreter, creating the venv on first use; None when pip cannot install."""
    return _tool_venv(VIPS_VENV, VIPS_REQUIREMENTS)


def wsidicomizer() -> Path | None:
    """wsidicomizer's command in its own venv (created on first use); None when pip cannot install."""
    python = _tool_venv(WSIDICOMIZER_VENV, WSIDICOMIZER_REQUIREMENTS)
    return None if python is None else python.with_name("wsidicomizer")


def _tool_venv(where: Path, requirements: tuple[str, ...]) -> Path | None:
    python = where / "bin" / "python"
    stamp = where / ".installed"
    if stamp.exists() and stamp.read_text() == "\n".join(requirements):
        return python
    print(f"installing {' '.join(requirements)} into {where} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements]
    if subprocess.run(pip, check=False).returncode != 0:
        return None
    stamp.write_text("\n".join(requirements))
    return python


def tool_versions(vips: Path | None) -> dict[str, str]:
    versions: dict[str, str] = {}
    if vips is not None:
        done = subprocess.run(
            [str(vips), HERE / "vips_job.py", "versions"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            versions.update({f"pip {k}": v for k, v in json.loads(done.stdout).items()})
    if shutil.which("vips"):
        done = subprocess.run(["vips", "--version"], capture_output=True, text=True, check=False)
        versions["system vips"] = done.stdout.strip()
    return versions


def our_block_cws(svs: Path, *, refresh: bool) -> Path:
    """The SVS as a CWS of 752x480 blocks, made by our converter (raises if that fails)."""
    out = svs.with_name(f"{svs.stem}-{BLOCK[0]}x{BLOCK[1]}.cws")
    if refresh and out.exists():
        shutil.rmtree(out)
    if not (out / "FinalScan.ini").exists():
        print(f"making {out.name} with our converter (cached) ...", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        size = f"{BLOCK[0]}x{BLOCK[1]}"
        argv = [*wsi_composite(), "convert", str(svs), str(out), "--to", "cws", "--tile-size", size]
        subprocess.run([*argv, "--quality", str(QUALITY), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return out


def cws_block_plan(cws: Path) -> dict[str, object]:
    """arrayjoin's view of a CWS: level-0 block files row-major from the top-left, and the crop.

    Placement follows FORMATS.md 1.4: stage x grows to the left and y upwards, so the top-left
    block has the largest x and y.
    """
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.read(cws / "FinalScan.ini")
    blocks = [(int(s["y"]), int(s["x"]), name) for name, s in ini.items() if "x" in s and "y" in s]
    blocks.sort(key=lambda b: (-b[0], -b[1]))
    across = len({x for _, x, _ in blocks})
    if across == 0 or len(blocks) % across:
        raise RuntimeError(f"{cws}: level-0 blocks do not form a full grid ({len(blocks)} blocks, {across} across)")
    files = [str(cws / f"{name}.jpg") for _, _, name in blocks]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise RuntimeError(f"{cws}: {len(missing)} blocks have no file, the first {missing[0]}")
    sections = {name.lower(): section for name, section in ini.items()}  # INI names are case-blind
    level0 = sections.get("level0")
    header = sections["header"]
    width = int(level0["iwidth"]) if level0 else across * int(header["iimagewidth"])
    height = int(level0["iheight"]) if level0 else len(blocks) // across * int(header["iimageheight"])
    return {"files": files, "across": across, "width": width, "height": height, "source": str(cws)}


def standin_block_plan(width: int, height: int) -> dict[str, object]:
    """752x480 JPEG blocks of the synthetic slide, made without our converter (its stand-in)."""
    out = CACHE / f"synthetic-{width}x{height}-blocks{BLOCK[0]}x{BLOCK[1]}-standin"
    plan_path = out / "blocks.json"
    if plan_path.exists():
        plan: dict[str, object] = json.loads(plan_path.read_text())
        return plan
    print(f"making {out.name} (stand-in blocks, cached) ...", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    bw, bh = BLOCK
    across, down = -(-width // bw), -(-height // bh)
    files = []
    for row in range(down):
        for col in range(across):
            w, h = min(bw, width - col * bw), min(bh, height - row * bh)
            pixels = np.ascontiguousarray(synthetic.region(col * bw, row * bh, w, h))
            path = out / f"Da{row * across + col}.jpg"
            path.write_bytes(codecs.encode_jpeg(pixels, quality=QUALITY))
            files.append(str(path))
    plan = {"files": files, "across": across, "width": width, "height": height, "source": "stand-in"}
    tmp = plan_path.with_suffix(".partial")
    tmp.write_text(json.dumps(plan))
    os.replace(tmp, plan_path)
    return plan


def svs_tile_count(svs: Path) -> int:
    import tifffile

    with tifffile.TiffFile(svs) as tif:
        return sum(len(p.dataoffsets) for p in tif.pages if isinstance(p, tifffile.TiffPage) and p.is_tiled)
