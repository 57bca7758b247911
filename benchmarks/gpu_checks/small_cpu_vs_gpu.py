# A one-off check as it ran on an H100 (2026-11-25) for docs/gpu.md, kept as it ran
# (lambdas timed inside loops, imports after sys.path edits); see README.md here.
import pathlib
import tempfile
import time

import numpy as np

import sxtdist
from sxtdist.recon import solve_slab
from sxtdist.runner import build_problem
from sxtdist.scoring import Regions, score


def main():
    global acq, truth, nz, roi
    path = pathlib.Path(tempfile.mkdtemp()) / "small.zarr"
    sxtdist.simulate(path, preset="small", seed=1)
    sxtdist.align(
        str(path), quiet=True
    ) if "quiet" in sxtdist.align.__code__.co_varnames else sxtdist.align(str(path))
    acq = sxtdist.open_acquisition(path, "r")
    truth = np.asarray(acq.truth[:].compute(), np.float32)
    nz = truth.shape[0]
    regions = Regions.of(acq)
    roi = np.broadcast_to(regions.roi(truth.shape[1:]), truth.shape)

    def run(scans, its, b, oracle=False, psf=False):
        problem = build_problem(acq, scans=scans, iterations=its, psf=psf)
        rows = problem.rows((0, nz))
        data = {
            n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items() if r.size
        }
        kw = dict(truth=truth, truth_mask=roi) if oracle else {}
        t0 = time.perf_counter()
        x, res = solve_slab(problem, (0, nz), data, backend=b, **kw)
        return score(x, truth, regions).psnr_roi, res, time.perf_counter() - t0

    for scans in (["full"], ["full", "roi"]):
        for its in (5, 10, 20, 30):
            out = {b: run(scans, its, b) for b in ("cpu", "gpu")}
            print(
                f"{'+'.join(scans)} {its} it: CPU {out['cpu'][0]:.2f} dB ({out['cpu'][2]:.1f}s, restarts {out['cpu'][1].restarts}), GPU {out['gpu'][0]:.2f} dB ({out['gpu'][2]:.1f}s, restarts {out['gpu'][1].restarts})",
                flush=True,
            )
    for b in ("cpu", "gpu"):
        p, res, t = run(["full", "roi"], 60, b, oracle=True)
        print(f"oracle {b}: {p:.2f} dB, {res.stopped_by}, restarts {res.restarts}", flush=True)
        r = np.array([h.sum() for h in res.residuals])
        print("  residual per it", np.round(r[:12] / r[0], 4))


if __name__ == "__main__":
    main()
