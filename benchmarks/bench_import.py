"""Peak memory of ``sxtdist import`` on a stack larger than we would want in memory.

Writes a float32 transmission stack of ``--size-gb`` to disk frame by frame (an
MRC with a ``.rawtlt``, or a TIFF), imports it with the command line in a child
process and samples the child's resident memory (psutil, every 20 ms; and the
kernel's ``ru_maxrss`` for children). The baseline is the peak RSS of a child
that only imports sxtdist and opens the same file, measured in the same run.

    PYTHONPATH=. python benchmarks/bench_import.py --size-gb 4
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_stack(path: str, fmt: str, n: int, side: int) -> None:
    """A float32 transmission stack, written one frame at a time (never whole in memory)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, (side, side)).astype(np.float32)
    frames = (np.roll(base, i, axis=1) for i in range(n))
    if fmt == "mrc":
        import mrcfile

        with mrcfile.new_mmap(path, shape=(n, side, side), mrc_mode=2, overwrite=True) as m:
            m.voxel_size = 300.0
            offset = 1024 + int(m.header.nsymbt)
        with open(path, "r+b") as f:
            f.seek(offset)
            for fr in frames:
                f.write(fr.tobytes())
        np.savetxt(os.path.splitext(path)[0] + ".rawtlt", np.linspace(-70, 70, n), fmt="%.3f")
    else:
        import tifffile

        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            tif.write(frames, shape=(n, side, side), dtype=np.float32, photometric="minisblack")
        np.savetxt(path + ".angles", np.linspace(-70, 70, n), fmt="%.3f")


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; return (peak RSS sampled in MB, wall seconds, ru_maxrss of children MB)."""
    import psutil

    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    maxrss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return peak / 2**20, wall, maxrss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=4.0, help="size of the stack on disk (GB)")
    ap.add_argument("--side", type=int, default=1024, help="frame side (pixels)")
    ap.add_argument("--format", choices=["mrc", "tiff"], default="mrc")
    ap.add_argument("--dir", default=None, help="working directory (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    args = ap.parse_args()

    n = max(1, int(args.size_gb * 1e9 // (args.side * args.side * 4)))
    work = tempfile.mkdtemp(prefix="sxt-bench-import-", dir=args.dir)
    src = os.path.join(work, "stack.mrc" if args.format == "mrc" else "stack.tif")
    acq = os.path.join(work, "acq.zarr")
    try:
        t0 = time.perf_counter()
        make_stack(src, args.format, n, args.side)
        size_gb = os.path.getsize(src) / 1e9
        print(f"stack: {n} frames of {args.side}x{args.side} float32, {size_gb:.2f} GB "
              f"({args.format}), written in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        py = sys.executable
        baseline_code = (
            "import sys; from sxtdist.io.importer import open_source; "
            "s = open_source(sys.argv[1]); s.read(0, 1); s.close()"
        )
        base_peak, _, _ = run_measured([py, "-c", baseline_code, src])
        cmd = [py, "-m", "sxtdist", "import", src, acq, "--scan", "roi", "-q"]
        if args.format == "tiff":
            cmd += ["--angles", src + ".angles", "--pixel-size-nm", "30"]
        peak, wall, maxrss = run_measured(cmd)

        import sxtdist

        scan = sxtdist.open_acquisition(acq, mode="r")["roi"]
        assert scan.shape == (n, args.side, args.side), scan.shape
        for i in (0, n // 2, n - 1):
            from sxtdist.io.importer import open_source

            with open_source(src) as s:
                expected = -np.log(s.read(i, i + 1).astype(np.float32))
            np.testing.assert_allclose(scan.read(angles=slice(i, i + 1)), expected, rtol=1e-6)

        print(
            f"baseline (import sxtdist, open the file, read one frame): peak RSS {base_peak:.0f} MB"
        )
        print(f"sxtdist import: peak RSS {peak:.0f} MB sampled (ru_maxrss of children "
              f"{maxrss:.0f} MB), {wall:.1f} s, {size_gb / wall:.2f} GB/s")  # fmt: skip
        print(f"peak RSS / stack size = {peak / 1e3 / size_gb:.3f}; "
              f"peak RSS / baseline = {peak / base_peak:.2f}")  # fmt: skip
        verdict = "PASS" if max(peak, maxrss) < 1024 else "FAIL"
        print(f"{verdict}: peak RSS {'<' if verdict == 'PASS' else '>='} 1 GB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
