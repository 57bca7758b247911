"""The intensity transform between the scans (paper appendix B.2, eq. 16): fit, apply,
describe. The reconstruction imports only this module of the alignment package."""

from __future__ import annotations

import numpy as np
from scipy import optimize


def dual_energy(t: np.ndarray, phi0: float, c: float) -> np.ndarray:
    """Eq. 16: ``phi0 T + (1 - phi0) T**c`` for a transmission ``T`` of the reference scan."""
    t = np.clip(np.asarray(t, np.float64), 1e-12, None)
    return phi0 * t + (1.0 - phi0) * t**c


def fit_intensity_transform(t_a: np.ndarray, t_b: np.ndarray, model: str = "dual_energy") -> dict:
    """Fit ``T_B = g(T_A)`` by least squares over paired transmissions.

    ``model="dual_energy"``: eq. 16, parameters ``phi0`` in (0, 1] and ``c > 0``;
    ``model="affine"``: ``T_B = a T_A + b`` (stray light). Returns the parameters
    and the RMS residual.
    """
    ta = np.asarray(t_a, np.float64).ravel()
    tb = np.asarray(t_b, np.float64).ravel()
    ok = np.isfinite(ta) & np.isfinite(tb) & (ta > 0)
    ta, tb = ta[ok], tb[ok]
    if ta.size < 3:
        raise ValueError("too few samples to fit an intensity transform")
    if model == "affine":
        a, b = np.polyfit(ta, tb, 1)
        rms = float(np.sqrt(np.mean((a * ta + b - tb) ** 2)))
        return {"model": "affine", "a": float(a), "b": float(b), "rms": rms}
    if model != "dual_energy":
        raise ValueError(f"unknown intensity model {model!r}")
    res = optimize.least_squares(
        lambda p: dual_energy(ta, p[0], p[1]) - tb,
        x0=[0.9, 1.5],
        bounds=([1e-3, 1e-3], [1.0, 20.0]),
    )
    phi0, c = (float(v) for v in res.x)
    rms = float(np.sqrt(np.mean(res.fun**2)))
    return {"model": "dual_energy", "phi0": phi0, "c": c, "rms": rms}


#: Above this fitted ``phi0`` eq. 16 is the identity to within the fit, and ``c`` says nothing.
IDENTITY_PHI0 = 0.995


def describe_intensity_transform(params: dict | None) -> str:
    """One line for people: the chosen model's parameters, its RMS misfit and the pairs it
    was fitted on, then the alternative's (what :func:`fit_intensity_transform` returned
    and ``sxtdist align`` stored)."""

    def one(p: dict) -> str:
        model = p.get("model", "identity")
        if model == "dual_energy":
            text = f"dual_energy (eq. 16): phi0 {p['phi0']:.4f}, c {p['c']:.3g}"
            if p["phi0"] > IDENTITY_PHI0:
                text += " (phi0 ~ 1: no second energy seen, c undetermined)"
        elif model == "affine":
            text = f"affine: a {p['a']:.4f}, b {p['b']:+.4f}"
        else:
            return model
        return text + (f", rms {p['rms']:.2g}" if "rms" in p else "")

    if not params:
        return "none"
    text = one(params)
    if params.get("pairs"):
        text += f" over {params['pairs']} pairs"
    if params.get("reference_scan"):
        text += f", relative to scan {params['reference_scan']!r}"
    if params.get("alternative"):
        text += f"; alternative {one(params['alternative'])}"
    return text


def apply_intensity_transform(data: np.ndarray, params: dict | None) -> np.ndarray:
    """Bring optical depths of the transformed scan back to the reference scan's model.

    ``data`` is optical depth ``-ln T_B`` (any shape); returns ``-ln T_A`` with
    ``T_A = g^{-1}(T_B)`` for the fitted ``g`` (eq. 16 or affine). ``None`` or
    ``{"model": "identity"}`` returns the data unchanged. float32 in, float32 out.
    """
    if not params or params.get("model", "identity") == "identity":
        return data
    tb = np.exp(-np.asarray(data, np.float64))
    model = params["model"]
    if model == "affine":
        a, b = float(params["a"]), float(params["b"])
        ta = (tb - b) / a
    elif model == "dual_energy":
        phi0, c = float(params["phi0"]), float(params["c"])
        # g is increasing in T for 0 < phi0 <= 1, c > 0: invert by a dense table
        grid = np.concatenate([np.geomspace(1e-8, 1e-2, 400), np.linspace(1e-2, 1.0, 4000)[1:]])
        g = dual_energy(grid, phi0, c)
        ta = np.interp(tb, g, grid, left=grid[0], right=None)
        above = tb > g[-1]  # brighter than the flat (noise): extrapolate linearly at T = 1
        if np.any(above):
            slope = phi0 + (1.0 - phi0) * c
            ta = np.where(above, 1.0 + (tb - g[-1]) / slope, ta)
    else:
        raise ValueError(f"unknown intensity model {model!r}")
    out = -np.log(np.clip(ta, 1e-12, None))
    return out.astype(np.asarray(data).dtype if np.asarray(data).dtype.kind == "f" else np.float32)
