"""``sxtdist import``: a projection stack from TIFF, MRC/IMOD, NXtomo or TXRM into an acquisition."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..io.importer import READERS, VALUES, import_scan
from ._options import overwrite_option, progress_option


@click.command()
@click.argument("source", type=click.Path())
@click.argument("acquisition", type=click.Path())
@click.option(
    "--scan",
    type=click.Choice(["full", "roi"]),
    required=True,
    help="Which scan SOURCE is: the sparse full field of view or the dense interior (ROI).",
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(READERS)), help="Reader (default: from the suffix)."
)
@click.option(
    "--angles",
    type=click.Path(),
    help="Angle list, degrees, one per line (IMOD .tlt/.rawtlt); overrides the file's.",
)
@click.option(
    "--angle-range",
    metavar="START:STOP",
    help="Evenly spaced angles, both ends included, when the file has none.",
)
@click.option("--pixel-size-nm", type=float, help="Pixel size (nm); overrides the file's.")
@click.option("--energy-ev", type=float, help="Photon energy (eV); overrides the file's.")
@click.option("--flat", type=click.Path(), help="Flat-field frames (any supported format).")
@click.option("--dark", type=click.Path(), help="Dark frames (any supported format).")
@click.option(
    "--values",
    type=click.Choice(VALUES),
    default="auto",
    show_default=True,
    help="What the pixels are; auto: intensity if there is a flat field, else transmission.",
)
@click.option(
    "--center-offset-px",
    metavar="ROW,COL",
    default="0,0",
    show_default=True,
    help="Offset of the detector centre from the rotation axis (pixels).",
)
@overwrite_option
@progress_option
def command(
    source,
    acquisition,
    scan,
    fmt,
    angles,
    angle_range,
    pixel_size_nm,
    energy_ev,
    flat,
    dark,
    values,
    center_offset_px,
    overwrite,
    progress,
) -> None:
    """Add the projections in SOURCE to ACQUISITION (created if absent) as one scan.

    SOURCE is a TIFF/OME-TIFF stack or folder of frames, an MRC stack (.mrc, .st,
    .ali; angles from a .rawtlt/.tlt beside it), an NXtomo HDF5 file or an Xradia
    .txrm/.xrm file. Frames are flat/dark corrected to optical depth and written
    one at a time. Run it twice, --scan full and --scan roi, for both scans.
    """
    import_scan(
        source,
        acquisition,
        scan,
        fmt=fmt,
        angles=angles,
        angle_range=_pair(angle_range, ":", "--angle-range", "START:STOP"),
        pixel_size_nm=pixel_size_nm,
        energy_ev=energy_ev,
        flat=flat,
        dark=dark,
        values=values,
        center_offset_px=_pair(center_offset_px, ",", "--center-offset-px", "ROW,COL"),
        overwrite=overwrite,
        progress=progress,
    )


def _pair(text: str | None, sep: str, name: str, form: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        a, b = (float(t) for t in text.split(sep))
    except ValueError:
        raise ParameterError(f"{name}: expected {form}, got {text!r}") from None
    return a, b
