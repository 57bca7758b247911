"""The robust rule for pairs on a damaged frame (the table in docs/dev/alignment-history.md).

For each seed and number of full views: simulate the ``small`` preset (paper dose,
random shifts of 3 px), lose half of one interior frame (view ``10 + 7 seed mod 70``,
its left half set to the frame's median, as a beam drop or a shutter leaves it),
align with the robust rule for pairs (``robust_pairs=5``, the default) and without it
(``0``), and compare with the truth in the joint reading
(:func:`sxtdist.alignment.gauge.shift_errors`). The interior RMS is over the other views:
the damaged view's own pairs all see the damage, and what the rule is for is to keep
it from spreading. The last column: the interior views that ``sxtdist.align`` named as
correlating poorly with all their pairs (``views_poor_peak``), which is how a damaged
frame whose pairs agree on a wrong shift shows. ``--clean`` skips the damage (the rule
should then change nothing, and no view be named).

Run: ``PYTHONPATH=. python benchmarks/align_damaged_frame.py [--full 9 19] [--seeds 1 2 3]
[--clean]``
"""

from __future__ import annotations

import argparse

import numpy as np
from align_accuracy import run_studies

RULES = (0.0, 5.0)


def damaged_view(seed: int) -> int:
    return 10 + (seed * 7) % 70


def damage_frame(acq, view: int) -> None:
    """Set the left half of interior frame ``view`` to the frame's median, in place."""
    import zarr

    arr = zarr.open_array(acq["roi"].path, mode="r+")
    frame = arr[view]
    frame[:, : frame.shape[1] // 2] = np.median(frame)
    arr[view] = frame


def study(n_full: int, seed: int, clean: bool, client, workdir: str) -> dict:
    import sxtdist
    from sxtdist.alignment.gauge import rms, shift_errors

    path = f"{workdir}/acq_{n_full}_{seed}.zarr"
    acq = sxtdist.simulate(path, preset="small", seed=seed, n_full=n_full, shifts_px=3.0)
    bad = None if clean else damaged_view(seed)
    if bad is not None:
        damage_frame(acq, bad)
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
    geoms = {name: acq[name].geometry for name in ("full", "roi")}
    out = {"n_full": n_full, "seed": seed, "view": bad}
    for k in RULES:
        res = sxtdist.align(
            acq, client=client, report="", dry_run=True, progress=False,
            robust_pairs=k,
        )  # fmt: skip
        e = shift_errors(res.shifts, truth, geoms)
        others = e["roi"] if bad is None else np.delete(e["roi"], bad, axis=0)
        kept = res.pair_kept_weight
        out[k] = {
            "others": rms(others),
            "full": rms(e["full"]),
            "view": None if bad is None else rms(e["roi"][bad]),
            "down": int(np.sum(kept < 1)),
            "named": bad is not None and bad in res.info["roi"].get("views_poor_peak", []),
            "named_any": res.info["roi"].get("views_poor_peak", []),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", type=int, nargs="+", default=[9, 19])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--clean", action="store_true", help="no damaged frame")
    args = ap.parse_args()
    cases = [(n_full, seed, args.clean) for n_full in args.full for seed in args.seeds]
    rows = run_studies("sxtdist-damaged-", cases, study)
    print()
    print(
        "| full views | seed | damaged view | interior RMS, other views: plain → robust [px] "
        "| full RMS: plain → robust [px] | damaged view's error: plain → robust [px] "
        "| pairs weighted down | views named for poor peaks |"
    )
    print("|---" * 8 + "|")
    for r in rows:
        p, q = r[RULES[0]], r[RULES[1]]
        view = "—" if r["view"] is None else f"{p['view']:.3f} → {q['view']:.3f}"
        print(
            f"| {r['n_full']} | {r['seed']} | {'—' if r['view'] is None else r['view']} "
            f"| {p['others']:.3f} → {q['others']:.3f} | {p['full']:.3f} → {q['full']:.3f} "
            f"| {view} | {q['down']} | {', '.join(map(str, q['named_any'])) or '—'} |"
        )
    print()
    print("| full views | seeds | interior RMS, other views, all seeds: plain → robust [px] "
          "| seeds ≤ 0.1 px: plain → robust |")  # fmt: skip
    print("|---" * 4 + "|")
    for n_full in args.full:
        sel = [r for r in rows if r["n_full"] == n_full]
        plain = np.array([r[RULES[0]]["others"] for r in sel])
        robust = np.array([r[RULES[1]]["others"] for r in sel])
        print(
            f"| {n_full} | {len(sel)} | {np.sqrt(np.mean(plain**2)):.4f} → "
            f"{np.sqrt(np.mean(robust**2)):.4f} | {np.sum(plain <= 0.1)}/{len(sel)} → "
            f"{np.sum(robust <= 0.1)}/{len(sel)} |"
        )


if __name__ == "__main__":
    main()
