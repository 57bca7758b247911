"""``sxtdist preview`` on the ``cell`` preset: its wall time, and the picture in docs/io.md.

Simulates ``cell`` (512³, 19 full views at 60 nm and 92 interior views at 30 nm; about
four minutes here) unless ``--acq`` names one, then times :func:`sxtdist.preview.preview`
at its defaults (3 slices, 512² panels, ASTRA's FBP on the CPU) ``--repeat`` times in
this process (Python's start-up and imports not counted; ``sxtdist preview`` prints the
same figure) and writes the docs' picture: the same preview with panels binned to
``--panel-px``, so that the PNG stays small. Prints the times and the load average.

Usage: ``python benchmarks/preview_cell.py [--acq CELL.zarr] [--repeat 3]
[--png docs/img/preview.png] [--panel-px 160]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import sxtdist
from sxtdist.execution import Execution
from sxtdist.preview import preview


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acq", help="a simulated cell (default: simulate one, seed 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--png", default=os.path.join("docs", "img", "preview.png"))
    ap.add_argument("--panel-px", type=int, default=160)
    args = ap.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="sxtdist_preview_")
    try:
        acq = args.acq or sxtdist.simulate(
            os.path.join(scratch, "cell.zarr"), "cell", 1, progress=False
        )
        ex = Execution(backend="cpu", overwrite=True)
        seconds = [
            preview(acq, os.path.join(scratch, "timed.png"), execution=ex).seconds
            for _ in range(args.repeat)
        ]
        made = preview(acq, args.png, execution=ex, panel_px=args.panel_px)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"preview of cell at its defaults ({len(made.z_index)} slices, 512² panels, CPU FBP):"
        )
        print(f"  {', '.join(f'{s:.2f}' for s in seconds)} s; median {np.median(seconds):.2f} s")
        print(f"  load average {load} ({os.cpu_count()} cores)")
        print(f"  picture: {made.png} ({os.path.getsize(made.png) / 1024:.0f} KiB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
