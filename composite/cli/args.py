"""argparse value types shared by the subcommands: bounded integers, positive numbers, boxes."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..geometry import Box


def int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in low..high (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
        return value

    return parse


def int_list(what: str, count: int | None = None) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated non-negative integers (exactly ``count`` when given)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be comma-separated integers, got {text!r}") from None
        if not values or (count is not None and len(values) != count):
            raise argparse.ArgumentTypeError(f"{what} needs {count or 'at least one'} integers, got {text!r}")
        if any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"{what} must not be negative, got {text!r}")
        return values

    return parse


def positive_float(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return value

    return parse


def box(what: str) -> Callable[[str], Box]:
    """An argparse type: ``X,Y,W,H`` in level-0 pixels with a positive size."""
    numbers = int_list(f"{what} X,Y,W,H", 4)

    def parse(text: str) -> Box:
        x, y, width, height = numbers(text)
        if width <= 0 or height <= 0:
            raise argparse.ArgumentTypeError(f"{what} width and height must be positive, got {text!r}")
        return Box(x, y, width, height)

    return parse
