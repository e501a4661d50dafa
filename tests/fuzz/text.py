"""Mutators for the text formats: CWS INI keys and values, ACI manifest lines."""

from __future__ import annotations

import random

NUMBERS = (
    "0",
    "-1",
    "1",
    "15",
    "20000",
    "65536",
    "10000000",
    "2147483648",
    "1e308",
    "nan",
    "inf",
    "-0",
    "99999999999999999999",
    "",
    "%MAGNIFICATION%",
    "1.5",
)
INI_HEADER_KEYS = (
    "iImageWidth",
    "iImageHeight",
    "iWidth",
    "iHeight",
    "lXStageRef",
    "lYStageRef",
    "lXStepSize",
    "lYStepSize",
    "iImageCount",
    "iAnalysisImageCount",
    "iZoom",
    "dMagnification",
    "tDescription",
)


def mutate_ini(text: str, rng: random.Random) -> tuple[str, str]:
    """A value, a key, a line dropped or repeated, a huge or spread-out block set, or a bad name."""
    lines = text.splitlines()
    kind = rng.choice(("value", "value", "value", "key", "drop", "dup", "header", "spread", "many", "name", "level"))
    values = [i for i, line in enumerate(lines) if "=" in line]
    if kind == "value" and values:
        i = rng.choice(values)
        key = lines[i].split("=", 1)[0]
        new = rng.choice(NUMBERS)
        lines[i] = f"{key}={new}"
        return "\n".join(lines) + "\n", f"ini-{key.strip()}-{new or 'empty'}"
    if kind == "key" and values:
        i = rng.choice(values)
        value = lines[i].split("=", 1)[1]
        key = rng.choice((*INI_HEADER_KEYS, "x", "y", "z", "", " "))
        lines[i] = f"{key}={value}"
        return "\n".join(lines) + "\n", f"ini-key-{key.strip() or 'empty'}"
    if kind == "drop" and lines:
        i = rng.randrange(len(lines))
        del lines[i]
        return "\n".join(lines) + "\n", f"ini-drop-{i}"
    if kind == "dup" and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "\n".join(lines) + "\n", f"ini-dup-{i}"
    header = next((i for i, line in enumerate(lines) if line.strip().lower() == "[header]"), 0)
    if kind == "header":
        key = rng.choice(INI_HEADER_KEYS)
        new = rng.choice(NUMBERS)
        lines.insert(header + 1, f"{key}={new}")
        return "\n".join(lines) + "\n", f"ini-header-{key}-{new or 'empty'}"
    if kind == "spread":
        # Two 1-px blocks far apart: a canvas of side*side px from a few bytes.
        side = rng.choice((20_000, 65_000, 1_000_000, 2**31 - 2))
        head = [line for line in lines[: header + 1]]
        rest = [
            "iImageWidth=1",
            "iImageHeight=1",
            "[Da0]",
            "x=0",
            "y=0",
            "[Da1]",
            f"x={side}",
            f"y={side}",
        ]
        return "\n".join(head + rest) + "\n", f"ini-spread-{side}"
    if kind == "many":
        count = rng.choice((10_000_000, 100_000, 2**31))
        lines.insert(header + 1, f"iImageCount={count}")
        extra = [f"[B{i}]\nx={i}\ny=0" for i in range(rng.choice((10, 20_000)))]
        return "\n".join(lines + extra) + "\n", f"ini-many-{count}"
    if kind == "level":
        index = rng.choice((0, 1, 9, 999))
        zoom = rng.choice(NUMBERS)
        lines += [f"[Level{index}]", f"iZoom={zoom}", f"iWidth={rng.choice(NUMBERS)}", f"iHeight={rng.choice(NUMBERS)}"]
        return "\n".join(lines) + "\n", f"ini-level{index}-zoom-{zoom or 'empty'}"
    sections = [i for i, line in enumerate(lines) if line.startswith("[") and "header" not in line.lower()]
    if sections:
        i = rng.choice(sections)
        name = rng.choice(("..", "FinalScan.ini", "a/b", "Label", "x" * 300, "SlideThumb"))
        lines[i] = f"[{name}]"
        return "\n".join(lines) + "\n", "ini-block-name"
    return text + "\x00", "ini-nul"


def mutate_aci(text: str, rng: random.Random, names: list[str]) -> tuple[str, str]:
    """An image line's offsets or path, a layer line, an attribute, or a huge manifest.

    ``names`` are other files the case directory holds (manifests, links, specials) that a
    line may point at.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    images = [i for i, line in enumerate(lines) if len(line.split()) >= 3 and "=" not in line.split()[0]]
    kind = rng.choice(("offset", "offset", "path", "path", "layer", "attribute", "lines", "drop"))
    if kind == "offset" and images:
        i = rng.choice(images)
        words = lines[i].split()
        which = rng.choice((-1, -2))
        words[which] = rng.choice(("-1", "99999999999", "2147483648", "1e3", "+5", "00", "9" * 30))
        lines[i] = " ".join(words)
        return "\n".join(lines) + "\n", f"aci-offset-{words[which][:12]}"
    if kind == "path" and images and names:
        i = rng.choice(images)
        words = lines[i].split()
        target = rng.choice(names)
        lines[i] = " ".join([target, *words[-2:]])
        return "\n".join(lines) + "\n", f"aci-path-{target.replace('/', '_')[:30]}"
    if kind == "layer":
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(("0 0", "1 -1", "1 2", "0 nan", "-1 0", "1 1e400")))
        return "\n".join(lines) + "\n", "aci-layer"
    if kind == "attribute":
        lines.insert(0, rng.choice(("edgetrim=maybe", "edgetrim=yes", "x" * 70_000 + "=1", "=1")))
        return "\n".join(lines) + "\n", "aci-attribute"
    if kind == "lines" and images:
        line = lines[images[0]]
        count = rng.choice((200_000, 1_000_000, 50_000))
        layered = rng.random() < 0.5
        body = []
        per_layer = max(1, count // 100) if layered else count
        for layer in range(count // per_layer):
            if layered:
                body.append(f"{layer} {layer}")
            body.extend([line] * per_layer)
        return "\n".join(body) + "\n", f"aci-lines-{count}{'-layers' if layered else ''}"
    if lines:
        del lines[rng.randrange(len(lines))]
    return "\n".join(lines) + "\n", "aci-drop"
