"""``sxtdist import``: a projection stack from TIFF, MRC/IMOD, NXtomo or TXRM into an acquisition."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..io.importer import READERS, VALUES, ImportOptions, import_scan
from ..io.metadata import ScanPhysics
from ._options import overwrite_option, progress_option


def physics_options(func):
    """The options that state a scan's physics (shared by ``import`` and ``edit``)."""
    for decorator in reversed(
        [
            click.option(
                "--pixel-size-nm", type=float, help="Pixel size in the object plane (nm)."
            ),
            click.option("--energy-ev", type=float, help="Photon energy (eV)."),
            click.option(
                "--zone-plate-ozw-nm",
                type=float,
                help="Outermost zone width of the objective zone plate (nm); "
                "reconstruct --psf needs it.",
            ),
            click.option("--photons", type=float, help="Incident photons per pixel and view."),
            click.option("--exposure-s", type=float, help="Exposure per view (s)."),
        ]
    ):
        func = decorator(func)
    return func


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
    "--data-path", help="NXtomo: dataset of the frames, e.g. /entry1/tomo_entry/data/data."
)
@click.option("--angles-path", help="NXtomo: dataset of the rotation angles (units attribute).")
@click.option("--image-key-path", help="NXtomo: dataset of the image_key (0/1/2 per frame).")
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
@click.option(
    "--angles-from-names",
    metavar="REGEX",
    help="TIFF folder: each file's angle (degrees) is the first group of REGEX in its name; "
    "files that do not match are skipped.",
)
@physics_options
@click.option("--flat", type=click.Path(), help="Flat-field frames (any supported format).")
@click.option("--dark", type=click.Path(), help="Dark frames (any supported format).")
@click.option("--flat-data-path", help="NXtomo --flat file: dataset of its frames.")
@click.option("--dark-data-path", help="NXtomo --dark file: dataset of its frames.")
@click.option("--crop-rows", metavar="START:STOP", help="Keep these rows of every frame.")
@click.option("--crop-cols", metavar="START:STOP", help="Keep these columns of every frame.")
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
    help="Offset of the detector centre from the rotation axis (pixels of the uncropped frame).",
)
@click.option(
    "--axis-tilt-deg",
    type=float,
    default=0.0,
    help="In-plane tilt of the rotation axis on the detector, when known (degrees).",
)
@click.option(
    "--xf",
    type=click.Path(),
    help="An IMOD .xf alignment of the stack: its shifts and axis tilt are stored.",
)
@overwrite_option
@progress_option
def command(source, acquisition, scan, overwrite, progress, **kw) -> None:
    """Add the projections in SOURCE to ACQUISITION (created if absent) as one scan.

    SOURCE is a TIFF/OME-TIFF stack or folder of frames, an MRC stack (.mrc, .st,
    .ali; angles from a .rawtlt/.tlt beside it), an NXtomo HDF5 file or an Xradia
    .txrm/.xrm file. Frames are flat/dark corrected to optical depth and written
    one at a time. Run it twice, --scan full and --scan roi, for both scans.
    """
    physics = pop_physics(kw)
    options = ImportOptions(
        angle_range=pair(kw.pop("angle_range"), ":", "--angle-range", "START:STOP"),
        crop_rows=_window(kw.pop("crop_rows"), "--crop-rows"),
        crop_cols=_window(kw.pop("crop_cols"), "--crop-cols"),
        center_offset_px=pair(kw.pop("center_offset_px"), ",", "--center-offset-px", "ROW,COL"),
        physics=physics,
        **kw,
    )
    import_scan(source, acquisition, scan, options, overwrite=overwrite, progress=progress)


def pop_physics(kw: dict) -> ScanPhysics:
    """Take the :func:`physics_options` out of a command's keyword arguments."""
    return ScanPhysics(
        pixel_size_nm=kw.pop("pixel_size_nm"),
        energy_ev=kw.pop("energy_ev"),
        zone_plate_ozw_nm=kw.pop("zone_plate_ozw_nm"),
        photons_per_pixel=kw.pop("photons"),
        exposure_s=kw.pop("exposure_s"),
    )


def pair(text: str | None, sep: str, name: str, form: str) -> tuple[float, float] | None:
    """Parse ``"A<sep>B"`` into two numbers (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        a, b = (float(t) for t in text.split(sep))
    except ValueError:
        raise ParameterError(f"{name}: expected {form}, got {text!r}") from None
    return a, b


def _window(text: str | None, name: str) -> tuple[int, int] | None:
    values = pair(text, ":", name, "START:STOP (whole pixels)")
    if values is None:
        return None
    if not all(float(v).is_integer() for v in values):
        raise ParameterError(f"{name}: expected whole pixels START:STOP, got {text!r}")
    return int(values[0]), int(values[1])
