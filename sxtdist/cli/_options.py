"""Shared option parsing for the subcommands."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..recon import parse_iterations


def per_scan_float(text: str | None, name: str) -> float | dict[str, float] | None:
    """Parse ``"60"`` (both scans) or ``"full=120,roi=60"`` (per scan)."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        out: dict[str, float] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in ("full", "roi"):
                raise ParameterError(f"{name}: unknown scan {key!r} (use full=..., roi=...)")
            out[key] = float(value)
        return out
    except ValueError as exc:
        raise ParameterError(f"{name}: cannot read {text!r} as a number or full=X,roi=Y") from exc


def scan_list(text: str | None) -> list[str] | None:
    """Parse ``"full,roi"``."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in ("full", "roi"):
            raise ParameterError(f"--scans: unknown scan {n!r} (choose from full, roi)")
    if not names:
        raise ParameterError("--scans: name at least one scan")
    return names


class _Iterations(click.ParamType):
    """A positive iteration count or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        try:
            return parse_iterations(value)
        except ParameterError as exc:
            self.fail(str(exc), param, ctx)


ITERATIONS = _Iterations()

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars (default: on when standard error is a terminal).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output instead of refusing."
)
