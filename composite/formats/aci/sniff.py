"""Is a file an ACI manifest? Decided by content, from its first 64 KiB.

A file named ``.aci`` that is text (no NUL byte) is taken as ACI so that its errors are reported
by the parser with a line number. Any other name must also parse: every non-comment line in the
head is an attribute, layer or image line, and there is at least one image line.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import FormatError, LimitError
from ...limits import is_regular, open_regular
from .manifest import decode, parse_manifest

SNIFF_BYTES = 65_536


def looks_like_aci(path: Path) -> bool:
    if not is_regular(path):
        return False
    fd = open_regular(path)
    try:
        head = os.pread(fd, SNIFF_BYTES, 0)
    finally:
        os.close(fd)
    if not head or b"\x00" in head:
        return False
    if path.suffix.lower() == ".aci":
        return True
    text = decode(head)
    if len(head) == SNIFF_BYTES:
        text = text.rsplit("\n", 1)[0]  # the last line may be cut short
    try:
        return parse_manifest(text).component_count > 0
    except LimitError:
        return True  # an ACI, refused as such when opened
    except FormatError:
        return False
