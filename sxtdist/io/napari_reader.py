"""A napari reader (npe2 contribution, ``sxtdist/napari.yaml``) for sxtdist's Zarr outputs.

napari-ome-zarr opens one NGFF image, so an acquisition's root (a group of
scans, not an image) showed nothing. This reader opens

- an **acquisition** as one layer per scan (projections ``(angle, y, x)``, scale
  1 × pixel size, the interior scan shown and the others hidden) and its
  simulated truth, hidden;
- a **volume** as one multiscale layer with its voxel size.

Each layer gets its NGFF scale and translation, the display window of its
``omero`` metadata as contrast limits, axis names and units, and sxtdist's
metadata. Arrays are lazy (dask), read as napari draws them. napari itself is
not imported here: the reader returns plain layer-data tuples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import zarr

from ..dataset import KEY
from . import ngff

#: A napari layer: ``(data, properties, layer type)``.
LayerData = tuple[Any, dict[str, Any], str]
#: The scan shown when an acquisition opens (the others are there, hidden).
SHOWN_SCAN = "roi"


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader if ``path`` is an sxtdist acquisition or volume, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read if sxtdist_kind(path) in ("acquisition", "volume") else None


def sxtdist_kind(path: str | os.PathLike[str]) -> str | None:
    """``"acquisition"``, ``"volume"`` (or another kind) for an sxtdist group; None otherwise."""
    path = os.fspath(path).rstrip("/")
    if not os.path.isdir(path):
        return None
    try:
        meta = zarr.open_group(path, mode="r").attrs.get(KEY)
    except Exception:  # not Zarr: not ours to read
        return None
    if not isinstance(meta, dict):
        return None
    return str(meta.get("kind", "acquisition"))


def read(path: str | list[str]) -> list[LayerData]:
    """The layers of an sxtdist acquisition (its scans and truth) or volume."""
    path = os.fspath(path[0] if isinstance(path, list) else path).rstrip("/")
    if sxtdist_kind(path) == "volume":
        from ..volume import open_volume

        vol = open_volume(path, mode="r")
        props = {"metadata": {"sxtdist": vol.meta, "path": path}}
        return [image_layer(vol.group, os.path.basename(path), props)]
    from ..dataset import open_acquisition

    acq = open_acquisition(path, mode="r")
    name = os.path.basename(path)
    layers = []
    for scan_name, scan in acq.scans.items():
        visible = scan_name == SHOWN_SCAN or SHOWN_SCAN not in acq.scans
        props = {"visible": visible, "metadata": {"sxtdist": scan.meta, "path": scan.path}}
        layers.append(image_layer(acq.group[scan_name], f"{name} {scan_name}", props))
    if "truth" in acq.group:
        props = {"visible": False, "metadata": {"sxtdist": acq.truth_meta or {}}}
        layers.append(image_layer(acq.group["truth"], f"{name} truth", props))
    return layers


def image_layer(group: zarr.Group, name: str, extra: dict[str, Any]) -> LayerData:
    """One image layer from an NGFF image group: every level, lazily, placed and windowed."""
    import dask.array as da

    scales = ngff.level_scales(group)
    levels = [da.from_zarr(group[str(k)]) for k in range(len(scales))]
    axes = group.attrs["ome"]["multiscales"][0]["axes"]
    props: dict[str, Any] = {
        "name": name,
        "scale": scales[0],
        "translate": ngff.level_translations(group)[0],
        "axis_labels": tuple(a["name"] for a in axes),
        "units": tuple(a.get("unit") or "pixel" for a in axes),
        "colormap": "gray",
        "multiscale": len(levels) > 1,
        **extra,
    }
    window = ngff.stored_display_window(group)
    if window is not None:
        props["contrast_limits"] = [window["start"], window["end"]]
    return (levels if len(levels) > 1 else levels[0], props, "image")
