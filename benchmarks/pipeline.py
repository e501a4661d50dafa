"""The re-encode pipeline alone on one level, with its codec calls timed: what is not the codec.

Usage: pipeline.py SRC [--level N] [--tile-size 256] [--quality 80] [--ycbcr] [--workers N]
                   [--sync] [--stripe-px PX] [--ceiling]

Runs :func:`composite.tiling.encoded_tiles` over level N of SRC into tiles of the given size and
throws the tiles away (no output, no companions, no start-up in the figures), with a clock around
every imagecodecs JPEG decode and encode call (``time.thread_time``, summed over threads). It
prints the CPU seconds of the decodes, of the encodes, and of everything else (reading the tiles,
the placement copies, padding, the interpreter's work, thread hand-overs). ``--sync`` runs the
pipeline's tasks on the calling thread, one after the other (no pool): the pipeline's own cost
without any thread. ``--ceiling`` does the codec ceiling's work instead (each stored tile read,
decoded and encoded at the same settings, no retiling), timed the same way, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import imagecodecs

_spent: dict[str, list[float]] = {"decode": [0.0, 0], "encode": [0.0, 0]}


def _clocked(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            _spent[name][0] += time.thread_time() - start
            _spent[name][1] += 1

    return timed


class _Inline:
    """A pool that runs each task when it is submitted (``--sync``)."""

    def submit(self, task: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(task(*args))
        return future


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("--level", type=int, default=0)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--ycbcr", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--sync", action="store_true", help="the pipeline's tasks on this thread, no pool")
    parser.add_argument("--stripe-px", type=int, default=None)
    parser.add_argument("--ceiling", action="store_true", help="the codec ceiling's work instead of the pipeline")
    args = parser.parse_args(argv)
    # clocks first: the codecs module looks imagecodecs' functions up when it calls them
    imagecodecs.jpeg8_decode = _clocked("decode", imagecodecs.jpeg8_decode)
    imagecodecs.jpeg8_encode = _clocked("encode", imagecodecs.jpeg8_encode)
    from composite import codecs
    from composite.geometry import TileGrid
    from composite.registry import open_slide
    from composite.retile import reencoded
    from composite.tiling import STRIPE_PX, encode_tile, encoded_tiles, stripes

    with open_slide(args.source) as slide:
        level = slide.levels[args.level]
        target = TileGrid(level.width, level.height, args.tile_size, args.tile_size)
        settings: dict[str, Any] = {"compression": "jpeg", "quality": args.quality, "rgb": not args.ycbcr}
        wall, cpu = time.perf_counter(), time.process_time()
        if args.ceiling:
            encoding = level.encoding
            assert encoding is not None and encoding.compression == "jpeg", "JPEG tiles expected"
            for row in range(level.grid.rows):
                for col in range(level.grid.cols):
                    data = level.read_encoded_tile(col, row)
                    if data is not None:
                        pixels = codecs.decode_jpeg(data, tables=encoding.jpeg_tables, rgb=encoding.rgb)
                        codecs.encode_jpeg(pixels, quality=args.quality, rgb=not args.ycbcr)
            mode = "ceiling (one thread)"
        elif args.sync:
            columns = stripes(level.grid, target, stripe_px=args.stripe_px or STRIPE_PX)

            def encode(pixels: Any, col: int, row: int) -> bytes:
                return encode_tile(pixels, **settings)

            for _ in reencoded(level, target, columns, encode=encode, pool=_Inline(), workers=1, fill=None):  # type: ignore[arg-type]
                pass
            mode = "pipeline, one thread (--sync)"
        else:
            for _ in encoded_tiles(level, target, workers=args.workers, stripe_px=args.stripe_px, **settings):
                pass
            mode = f"pipeline, {args.workers or 'all'} worker(s)"
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    (dec, ndec), (enc, nenc) = _spent["decode"], _spent["encode"]
    print(f"{mode}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"  decode  {dec:6.2f} s CPU  ({dec / max(ndec, 1) * 1e6:.0f} us x {ndec:.0f})")
    print(f"  encode  {enc:6.2f} s CPU  ({enc / max(nenc, 1) * 1e6:.0f} us x {nenc:.0f})")
    print(f"  other   {cpu - dec - enc:6.2f} s CPU  (reads, copies, padding, the interpreter, hand-overs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
