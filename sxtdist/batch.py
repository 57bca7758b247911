"""Whole-cell batches: many acquisitions reconstructed concurrently on one Dask cluster.

:func:`reconstruct_batch` takes a manifest (a YAML or CSV file, or a list of
cells), reconstructs every cell into ``out_dir/<name>.zarr`` and returns (and
writes as ``out_dir/batch-summary.csv``) one row per cell. Cells run at the same
time from client-side threads sharing one client, so the scheduler interleaves
their block tasks over all workers.

Faults stay inside their cell: a cell whose input is bad or whose run fails is
recorded as ``failed`` and the others go on. A re-run resumes: complete outputs
are skipped, unfinished ones resume from their finished blocks. An interruption
(SIGINT, or SIGTERM in the CLI) stops every cell with its output left complete or
visibly unfinished (``status: running`` in its metadata), writes the summary, and
re-raises :class:`KeyboardInterrupt`. A second batch writing to the same
directory is refused by a lock.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._progress import progress_bar
from .distributed import cancel_tasks, get_client
from .errors import (
    InputError,
    OutputExistsError,
    OutputLockedError,
    ParameterError,
    SxtdistError,
    describe_os_error,
    one_line,
    option,
    os_error,
    printable,
    quoted,
    use_overwrite,
)
from .execution import Execution, execution_fields
from .lock import activity_held_by, held_by, write_lock
from .logs import cell_messages_as_details
from .outputs import (
    check_name,
    check_not_input,
    check_output,
    make_folders,
    remove_empty_folders,
    replacing_file,
)
from .recon import AUTO, parse_iterations
from .scoring import PSNR_NOTE

logger = logging.getLogger(__name__)

#: Summary file written into the output directory.
SUMMARY_NAME = "batch-summary.csv"
#: Statuses of a cell in the summary. ``running`` is left only by a batch that stopped
#: without a last word (killed outright, its machine lost): the summary is written as the
#: cells start and finish.
STATUSES = ("done", "skipped", "failed", "interrupted", "not run", "running")
#: The message of a running cell's row (read only after such a stop).
RUNNING_NOTE = "started; the batch stopped before it finished: run the batch again to resume"


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "y", "on"):
        return True
    if s in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"not a yes/no value: {v!r}")


def _to_scans(v: Any) -> list[str]:
    names = (
        v if isinstance(v, list | tuple) else str(v).replace(";", ",").replace("+", ",").split(",")
    )
    names = [str(n).strip() for n in names if str(n).strip()]
    bad = [n for n in names if n not in ("full", "roi")]
    if bad or not names:
        raise ValueError(f"scans must name full and/or roi, got {v!r}")
    return names


def _to_align(v: Any) -> str | bool:
    if isinstance(v, str) and v.strip().lower() in ("auto", "always", "never"):
        return {"auto": "auto", "always": True, "never": False}[v.strip().lower()]
    try:
        return _to_bool(v)
    except ValueError:
        raise ValueError(f"align must be auto, yes/always or no/never, got {v!r}") from None


def _to_align_method(v: Any) -> str:
    from .alignment.options import METHODS

    method = str(v).strip().lower()
    if method not in METHODS:
        raise ValueError(f"align_method must be one of {', '.join(METHODS)}, got {v!r}")
    return method


def _to_weights(v: Any) -> dict[str, float]:
    if isinstance(v, Mapping):
        return {str(k): float(x) for k, x in v.items()}
    out = {}
    for part in str(v).replace(";", ",").split(","):
        k, _, x = part.partition("=")
        out[k.strip()] = float(x)
    return out


#: Per-cell options (manifest keys, ``-`` or ``_``) → converter; they are
#: :func:`sxtdist.reconstruct`'s keyword arguments.
CELL_OPTIONS = {
    "method": str,
    "iterations": parse_iterations,
    "scans": _to_scans,
    "block_size": int,
    "halo": int,
    "nonneg_every": int,
    "rtol": float,
    "psf": _to_bool,
    "voxel_size_nm": float,
    "weights": _to_weights,
    "memory_budget": int,
    "backend": str,
    "oracle": _to_bool,
    # not reconstruct()'s: whether and how to align the cell first
    "align": _to_align,
    "align_method": _to_align_method,
}
#: Options for the alignment step rather than the reconstruction.
ALIGN_OPTIONS = ("align", "align_method")
_CELL_KEYS = ("name", "acquisition", "out")


@dataclass
class Cell:
    """One acquisition of a batch: where it is, where its volume goes, its options."""

    name: str
    acquisition: str
    out: str
    options: dict[str, Any] = field(default_factory=dict)


#: The metric columns of the summary (:func:`cell_metrics`); empty where unknown.
METRICS = ("psnr_roi_db", "psnr_cell_db", "fsc_nm", "mtf50_nm")


@dataclass
class CellResult:
    """One row of the summary.

    Against a truth (simulated data): PSNR in the ROI cylinder and in the cell, with the
    peak the 99th percentile of the truth inside the cell (:mod:`sxtdist.scoring`); the
    FSC (1/7) and MTF-50 resolutions over the central ROI cube, ``"not crossed"`` when
    the curve does not cross.
    """

    cell: str
    status: str
    seconds: float | None
    output: str
    message: str = ""
    psnr_roi_db: float | None = None
    psnr_cell_db: float | None = None
    fsc_nm: float | str | None = None
    mtf50_nm: float | str | None = None

    def row(self) -> dict[str, str]:
        d = asdict(self)
        for k in ("seconds", *METRICS):
            d[k] = "" if d[k] is None else d[k] if isinstance(d[k], str) else f"{d[k]:.2f}"
        return {k: str(d[k]) for k in _COLUMNS}


# --- manifest ----------------------------------------------------------------------------


def read_manifest(
    source: str | os.PathLike[str] | Sequence[Mapping[str, Any] | str],
    out_dir: str | os.PathLike[str],
    defaults: Mapping[str, Any] | None = None,
) -> list[Cell]:
    """The cells of a manifest.

    Parameters
    ----------
    source
        A ``.yaml``/``.yml`` file (a list of cells, or ``{"defaults": {...},
        "cells": [...]}``), a ``.csv`` file (a header row; column ``acquisition``
        required, ``name``, ``out`` and any option optional, an empty field meaning
        the default), or a list of cells (mappings, or bare acquisition paths).
        Relative acquisition paths are relative to the manifest's directory.
    out_dir
        Where outputs go: ``out_dir/<name>.zarr`` unless a cell names its ``out``
        (relative to ``out_dir``).
    defaults
        Options for every cell (below the manifest's own ``defaults``, above nothing).
    """
    base = Path.cwd()
    where = "cells"
    file_defaults: dict[str, Any] = {}
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        where = os.fspath(path)
        if not path.is_file():
            raise InputError(path, "no such manifest file")
        base = path.resolve().parent
        entries, file_defaults = _load_manifest_file(path)
    else:
        entries = list(source)
    if not entries:
        raise InputError(where, "lists no cells")
    merged_defaults = _check_options(dict(defaults or {}), where, "defaults")
    merged_defaults.update(_check_options(file_defaults, where, "defaults"))
    cells: list[Cell] = []
    for i, entry in enumerate(entries, start=1):
        if isinstance(entry, str | os.PathLike):
            entry = {"acquisition": os.fspath(entry)}
        if not isinstance(entry, Mapping):
            raise InputError(where, f"cell {i}: expected a mapping or a path, got {entry!r}")
        entry = {_key(k): v for k, v in entry.items() if v is not None and v != ""}
        acq = entry.pop("acquisition", None)
        if not acq:
            raise InputError(where, f"cell {i}: no 'acquisition'")
        acq_path = Path(os.path.expanduser(str(acq)))
        if not acq_path.is_absolute():
            acq_path = base / acq_path
        name = _check_name(str(entry.pop("name", "") or _stem(acq_path)), where, i)
        out = str(entry.pop("out", "") or f"{name}.zarr")
        out_path = Path(out) if Path(out).is_absolute() else Path(out_dir) / out
        opts = dict(merged_defaults)
        opts.update(_check_options(entry, where, f"cell {i} ({name})"))
        cells.append(Cell(name, os.fspath(acq_path), os.fspath(out_path), opts))
        _check_recipe(cells[-1], where, f"cell {i} ({name})")
    _check_unique(cells, where)
    _check_outputs(cells, out_dir, where)
    _check_alignments(cells, where)
    return cells


def _check_recipe(cell: Cell, where: str, what: str) -> None:
    """The cell's options together, checked as its run checks them (a block size of 0, an
    unknown method, SIRT with ``iterations: auto``, a count over the cap ...): refused with
    the manifest, not found as each cell ran, after the cluster's queue and the alignment."""
    from .recon import check_solve_values
    from .runner import split_options

    try:
        recipe, _ = split_options(None, None, _reconstruct_options(cell))
        # the rest of what the solve's Problem checks once the acquisition is read
        weights = recipe.weights if isinstance(recipe.weights, Mapping) else {}
        check_solve_values(
            recipe.method, recipe.iterations, weights, recipe.nonneg_every, recipe.rtol
        )
    except (ParameterError, TypeError, ValueError) as exc:
        raise InputError(where, f"{what}: {exc}") from None


def _alignment_asked(cell: Cell) -> tuple[str | bool, str | None]:
    """``(align, align_method)`` as the cell asks for them (no method where it never aligns)."""
    mode = cell.options.get("align", "auto")
    return mode, None if mode is False else cell.options.get("align_method", "anchor")


def _check_alignments(cells: list[Cell], where: str) -> None:
    """Cells sharing an acquisition ask for one alignment of it.

    An acquisition stores one set of shifts per scan (design: the metadata), so a cell
    aligning it another way would change the shifts another cell is reconstructed with
    (or has reconstructed with, as the threads happen to run): refused before any work.
    """
    first: dict[str, Cell] = {}
    for c in cells:
        seen = first.setdefault(os.path.realpath(c.acquisition), c)
        asked, theirs = _alignment_asked(c), _alignment_asked(seen)
        if asked != theirs:
            said = [
                f"{k} {_said(a)} and {_said(b)}"
                for k, a, b in zip(ALIGN_OPTIONS, theirs, asked)
                if a != b and None not in (a, b)
            ]
            raise InputError(
                where,
                f"cells {seen.name!r} and {c.name!r} share the acquisition "
                f"{printable(c.acquisition)} "
                f"but ask for different alignments ({'; '.join(said)}); it holds one set of "
                "shifts: give them the same align and align_method, or each its own copy",
            )


def _said(v: str | bool) -> str:
    return "yes" if v is True else "no" if v is False else v


def _check_name(name: str, where: str, i: int) -> str:
    """A cell's name names its output and its summary row: a name, not a path."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\\" in name:
        raise InputError(
            where, f"cell {i}: name {name!r} must be a name (no path separators, not '..')"
        )
    if any(not c.isprintable() for c in name):
        raise InputError(where, f"cell {i}: name {name!r} has characters that cannot be shown")
    return name


def _check_outputs(cells: list[Cell], out_dir: str | os.PathLike[str], where: str) -> None:
    """Every output stays under ``out_dir`` and is no input (:mod:`sxtdist.outputs`)."""
    given = check_name(os.fspath(out_dir))
    out_dir = os.path.realpath(given)
    inputs = [c.acquisition for c in cells]
    # named as given (``lnk/res``), compared resolved (``cell.zarr/res``): inside the input
    check_not_input(given, [i for i in inputs if not _under(i, out_dir)])
    for c in cells:
        real = os.path.realpath(check_name(c.out))
        if not _under(real, out_dir) or real == out_dir:
            raise InputError(where, f"cell {c.name!r}: output {c.out} is not under --out {out_dir}")
        try:
            check_not_input(c.out, inputs)
        except InputError as exc:
            raise InputError(where, f"cell {c.name!r}: output {exc}") from None


def _check_cell_outputs(cells: list[Cell], overwrite: bool) -> dict[str, str | None]:
    """Each cell's output status now (``None``, ``"running"``, ``"complete"``), every cell's
    outputs checked in one pass before any cell runs.

    The batch is refused, naming the cell and the path, when an output may not be
    written (a user's folder, a volume holding a user's files, an acquisition),
    is being written by another run, or is unfinished and would not be resumed (begun on
    other data or with other parameters; ``--overwrite`` starts it over); and, for a cell
    that will align its acquisition, when its report folder may not be written or that
    acquisition is being aligned by another run (``sxtdist align``). Found as each cell
    ran, ``--overwrite`` had replaced other cells' outputs before refusing one, and a
    later cell's output was found hours into the batch.
    """
    inputs = [c.acquisition for c in cells]
    status: dict[str, str | None] = {}
    for c in cells:
        with _refusing_the_batch(c):
            check_output(c.out, "volume", inputs=inputs, overwrite=overwrite, resume=True)
            holder = held_by(c.out)
            if holder:
                raise OutputLockedError(
                    c.out, f"is being written by {holder}; wait for it to finish"
                )
            status[c.name] = _existing_status(c)
            if status[c.name] == "running" and not overwrite:
                _check_resumable(c)
    resuming = _resumed_acquisitions(cells, status, overwrite)
    for c in cells:
        if not _will_align(c, resuming):
            continue
        with _refusing_the_batch(c):
            check_output(_report_path(c), "alignment-report", inputs=inputs, overwrite=True)
            holder = activity_held_by(c.acquisition, "aligned")
            if holder:
                raise OutputLockedError(
                    c.acquisition, f"is being aligned by {holder}; wait for it to finish"
                )
    return status


@contextmanager
def _refusing_the_batch(cell: Cell) -> Iterator[None]:
    """A refusal found by the up-front pass (:func:`_check_cell_outputs`) says for which
    cell, and that no cell was run."""
    try:
        yield
    except InputError as exc:
        said = f"{exc.problem}; no cell was run (refused at cell {cell.name!r})"
        raise type(exc)(exc.path, said) from None


def _resumed_acquisitions(
    cells: list[Cell], status: Mapping[str, str | None], overwrite: bool
) -> set[str]:
    """The acquisitions (resolved) of the cells whose unfinished output is resumed: not
    aligned again (the resume needs the shifts it began with); ``overwrite`` starts over."""
    if overwrite:
        return set()
    return {os.path.realpath(c.acquisition) for c in cells if status.get(c.name) == "running"}


def _will_align(cell: Cell, resuming: set[str]) -> bool:
    """Whether the cell's run aligns its acquisition (:func:`_align_cell`): asked, not
    resumed, and for ``"auto"`` some scan not aligned yet. An acquisition that cannot be
    read is its row's to tell."""
    mode = _alignment_asked(cell)[0]
    if mode is False or os.path.realpath(cell.acquisition) in resuming:
        return False
    if mode is True:
        return True
    from .dataset import open_acquisition

    try:
        return not open_acquisition(cell.acquisition, "r").aligned
    except SxtdistError:
        return False


def _report_path(cell: Cell) -> str:
    """Where a cell's alignment report goes: ``<output stem>_alignment`` beside its output."""
    out = cell.out.rstrip("/").rstrip(os.sep)
    return (out[:-5] if out.endswith(".zarr") else out) + "_alignment"


def _check_resumable(cell: Cell) -> None:
    """Refuse (:class:`OutputExistsError`) the cell's unfinished output that its run would
    not resume; any other problem (its acquisition gone, a bad option) is its row's, told
    when it runs, as before."""
    from .runner import check_resumable

    try:
        check_resumable(cell.acquisition, cell.out, **_reconstruct_options(cell))
    except OutputExistsError as exc:
        raise OutputExistsError(exc.path, f"{exc.problem}{_redo_alone(cell)}") from None
    except SxtdistError:
        pass


def _reconstruct_options(cell: Cell) -> dict[str, Any]:
    """The cell's options that :func:`~sxtdist.runner.reconstruct` takes (not its alignment's)."""
    return {k: v for k, v in cell.options.items() if k not in ("align", "align_method")}


def _under(path: str, folder: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([real, folder]) == folder


def _key(k: Any) -> str:
    return str(k).strip().lower().replace("-", "_")


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return p.stem or name


def _load_manifest_file(path: Path) -> tuple[list[Any], dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:  # Excel writes a BOM
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise InputError(path, f"cannot read as CSV: {exc}") from None
        if rows and "acquisition" not in {_key(k) for k in rows[0] if k}:
            raise InputError(path, "CSV manifest needs an 'acquisition' column")
        return [{k: v for k, v in r.items() if k} for r in rows], {}
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_text_loader())
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(path, f"cannot read as YAML: {first}") from None
        if isinstance(data, list):
            return data, {}
        if isinstance(data, Mapping) and isinstance(data.get("cells"), list):
            extra = set(data) - {"cells", "defaults"}
            if extra:
                raise InputError(path, f"unknown top-level key(s): {', '.join(sorted(extra))}")
            d = data.get("defaults") or {}
            if not isinstance(d, Mapping):
                raise InputError(path, "'defaults' must be a mapping of options")
            return data["cells"], dict(d)
        raise InputError(path, "expected a list of cells or a mapping with 'cells:'")
    raise InputError(path, "manifest must be .yaml, .yml or .csv")


def _text_loader() -> type:
    """PyYAML's safe loader reading plain numbers and yes/no as the text written (each
    option converts its value itself): a cell named ``010`` is ``"010"``, not YAML 1.1's
    octal 8, and ``007`` is not ``7``."""
    import yaml

    class TextLoader(yaml.SafeLoader):
        pass

    typed = {f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool")}
    TextLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in typed]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return TextLoader


def _check_options(raw: Mapping[str, Any], where: str, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = _key(k)
        if key in _CELL_KEYS and what != "defaults":
            continue
        if key not in CELL_OPTIONS:
            known = ", ".join(sorted(CELL_OPTIONS))
            raise InputError(where, f"{what}: unknown option {k!r} (known: {known})")
        if v is None or v == "":
            continue
        try:
            out[key] = CELL_OPTIONS[key](v)
        except (TypeError, ValueError, SxtdistError) as exc:
            raise InputError(where, f"{what}: {k}: {exc}") from None
    return out


def _check_unique(cells: list[Cell], where: str) -> None:
    names: set[str] = set()
    for c in cells:
        if c.name in names:
            raise InputError(where, f"two cells are named {c.name!r}; names must be unique")
        names.add(c.name)
    seen: dict[str, str] = {}
    for c in cells:
        key = os.path.abspath(c.out)
        if key in seen:
            raise InputError(
                where, f"cells {seen[key]!r} and {c.name!r} write the same output {c.out}"
            )
        seen[key] = c.name


# --- running -----------------------------------------------------------------------------


def reconstruct_batch(
    manifest: str | os.PathLike[str] | Sequence[Mapping[str, Any] | str],
    out_dir: str | os.PathLike[str],
    execution: Execution | None = None,
    *,
    concurrent: int | None = None,
    metrics: bool = True,
    summary: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    client: Any = None,
    **options: Any,
) -> list[CellResult]:
    """Reconstruct every cell of a manifest on one cluster; return the summary rows.

    Parameters
    ----------
    manifest
        A YAML/CSV manifest file or a list of cells (see :func:`read_manifest`).
    out_dir
        Output directory (created); holds the volumes, the summary CSV and, while
        the batch runs, a lock refusing a second batch into the same place.
    execution
        Where and how to run (:class:`~sxtdist.execution.Execution`): one cluster for
        all cells. Its ``overwrite`` reconstructs complete outputs again instead of
        skipping them; its ``progress`` draws a bar over cells; its ``backend`` and
        ``memory_budget`` are the cells' defaults.
    concurrent
        Cells in flight at once (default: the number of workers, at least 2).
    metrics
        Where a cell has a truth (simulated data): :func:`cell_metrics` (PSNR in the ROI
        and in the cell, FSC and MTF-50 resolutions), computed on a worker.
    summary
        Summary CSV path (default ``out_dir/batch-summary.csv``).
    workers, client, **options
        Shortcuts for fields of ``execution`` (``workers=``, ``client=``,
        ``overwrite=`` ...), and options for every cell (:data:`CELL_OPTIONS`:
        ``method=``, ``iterations=`` ...); the manifest's own win.

    Returns
    -------
    list of CellResult
        In manifest order. Raises :class:`KeyboardInterrupt` after writing the
        summary when interrupted.
    """
    shortcuts = {k: options.pop(k) for k in execution_fields() if k in options}
    ex = Execution.of(execution, workers=workers, client=client, **shortcuts)
    for key in ("backend", "memory_budget"):  # the cells' defaults, below the manifest's
        if getattr(ex, key) != getattr(Execution(), key):
            options.setdefault(key, getattr(ex, key))
    cells = read_manifest(manifest, out_dir, options)
    status = _check_cell_outputs(cells, ex.overwrite)
    out_dir = os.fspath(out_dir)
    summary_path = os.fspath(summary) if summary else os.path.join(out_dir, SUMMARY_NAME)
    check_output(summary_path, "summary", inputs=[c.acquisition for c in cells], resume=True)
    _tell_a_stopped_batch(summary_path)
    results = {c.name: CellResult(c.name, "not run", None, c.out) for c in cells}
    interrupted = False
    t0 = time.perf_counter()
    made = make_folders(out_dir)
    try:
        with write_lock(out_dir):
            started = False
            try:
                with get_client(ex) as c:
                    n_workers = len(c.scheduler_info().get("workers", {}))
                    width = max(1, min(len(cells), concurrent or max(2, n_workers)))
                    logger.info(
                        "batch: %d cell(s), %d at a time, into %s", len(cells), width, out_dir
                    )
                    for line in _backend_lines(cells, c, not ex.external):
                        logger.info("%s", line)
                    run = _Batch(c, ex, metrics, results, summary_path, status)
                    started = True
                    interrupted = run.run_cells(cells, width)
            finally:
                if started:  # a batch that never ran (no cluster) leaves nothing
                    run.save()
    except BaseException:
        if made:
            remove_empty_folders(made)
        raise
    rows = [results[c.name] for c in cells]
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    said = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    logger.info("batch: %s in %.1f s; summary %s", said, time.perf_counter() - t0, summary_path)
    if metrics and any(r.psnr_roi_db is not None or r.psnr_cell_db is not None for r in rows):
        logger.info("batch: PSNR %s", PSNR_NOTE)
    if interrupted:
        raise KeyboardInterrupt
    return rows


def _tell_a_stopped_batch(summary: str) -> None:
    """Say which cells the batch that last wrote ``summary`` left running when it stopped
    without a last word (killed outright): their outputs are unfinished, and resume."""
    try:
        rows = read_summary(summary)
    except (OSError, UnicodeDecodeError, csv.Error):
        return
    running = [r.get("cell", "?") for r in rows if r.get("status") == "running"]
    if running:
        cells = (
            f"cell {running[0]} was" if len(running) == 1 else f"cells {', '.join(running)} were"
        )
        logger.info(
            "batch: the batch that last wrote %s stopped while %s running (killed, or its "
            "machine lost): an unfinished output resumes",
            summary,
            cells,
        )


def _backend_lines(cells: Sequence[Cell], client: Any, local: bool) -> list[str]:
    """What each requested backend resolves to on this cluster, said once at the start.

    A batch's cells run on its cluster: CPU workers offer no GPU, so on a machine with
    one the default local cluster reconstructs on the CPU; say so, and how to use it.
    """
    from .backends import probe_gpu, select_backend

    lines = []
    for requested in sorted({str(c.options.get("backend", "auto")) for c in cells}):
        try:
            chosen, why = select_backend(requested, client=client)
        except SxtdistError as exc:
            lines.append(f"batch: cells asking for backend {requested!r} will fail: {exc}")
            continue
        line = f"batch: backend {chosen} ({why})"
        if chosen == "cpu" and requested == "auto" and local and probe_gpu().usable:
            line += (
                "; this machine has a GPU: "
                f"{option('--cluster local-cuda', 'cluster="local-cuda"')} reconstructs on it"
            )
        lines.append(line)
    return lines


@dataclass
class _Batch:
    """The cells of one batch on one client: run them, record each one's result."""

    client: Any
    execution: Execution
    metrics: bool
    results: dict[str, CellResult]
    #: Where the summary goes: rewritten as each cell starts and ends, so a batch killed
    #: outright leaves what it finished (:data:`RUNNING_NOTE`).
    summary: str
    #: Each cell's output status when the batch began (:func:`_check_cell_outputs`).
    status: dict[str, str | None]
    stop: threading.Event = field(default_factory=threading.Event)
    saving: threading.Lock = field(default_factory=threading.Lock)
    drain_timeout: float = 120.0
    #: The acquisitions aligned by this batch (resolved paths): each is aligned once.
    aligned: set[str] = field(default_factory=set)
    #: The acquisitions (resolved paths) of a cell whose unfinished output is resumed:
    #: not aligned again, whichever of their cells asks (the resume needs its shifts).
    resuming: set[str] = field(default_factory=set)

    def run_cells(self, cells: list[Cell], width: int) -> bool:
        """Run the cells in ``width`` threads; fill ``results``; True if interrupted."""
        # --overwrite starts unfinished outputs over
        self.resuming = _resumed_acquisitions(cells, self.status, self.execution.overwrite)
        pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="sxtdist-cell")
        futures = {pool.submit(self.run_cell, cell): cell for cell in cells}
        pending = set(futures)
        try:
            with progress_bar(len(cells), "cells", self.execution.progress, unit="cell") as advance:
                while pending:
                    # A timeout keeps the main thread responsive to SIGINT.
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for f in done:
                        self._record(f.result())
                        advance()
            return False
        except KeyboardInterrupt:
            # Stop: cells not started stay "not run"; running cells' tasks are cancelled so
            # their threads return; blocks already written stay recorded for the resume.
            self.stop.set()
            logger.info("batch: interrupted; stopping the running cells")
            for f in pending:
                f.cancel()
            cancel_tasks()
            running = [f for f in pending if not f.cancelled()]
            done, still = wait(running, timeout=self.drain_timeout)
            for f in done:
                self._record(f.result())
            for f in still:
                cell = futures[f]
                self.results[cell.name] = CellResult(
                    cell.name, "interrupted", None, cell.out, "did not stop in time"
                )
            return True
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def save(self, r: CellResult | None = None) -> None:
        """Put ``r`` in the results, and the results in the summary file (from any thread:
        a cell still stopping may write its row as the batch writes its last)."""
        with self.saving:
            if r is not None:
                self.results[r.cell] = r
            write_summary(list(self.results.values()), self.summary)

    def _record(self, r: CellResult) -> None:
        self.save(r)
        msg = f" ({r.message})" if r.message else ""
        secs = f" in {r.seconds:.1f} s" if r.seconds is not None else ""
        logger.info("%s: %s%s%s", r.cell, r.status, secs, msg)

    def run_cell(self, cell: Cell) -> CellResult:
        """Align (when asked) and reconstruct one cell; its row, whatever happens."""

        def result(status: str, seconds: float | None, message: str = "", scores=None):
            return CellResult(cell.name, status, seconds, cell.out, message, **(scores or {}))

        if self.stop.is_set():
            return result("not run", None, "batch interrupted before this cell started")
        self.save(result("running", None, RUNNING_NOTE))
        t0 = time.perf_counter()
        try:
            with cell_messages_as_details():
                return self._run_cell(cell, result, t0)
        except SxtdistError as exc:
            alone = isinstance(exc, OutputExistsError) and exc.path == cell.out
            message = f"{exc}{_redo_alone(cell)}" if alone else str(exc)
            return result("failed", time.perf_counter() - t0, message)
        except Exception as exc:
            if self.stop.is_set():
                # an output with no finished block is removed (runner): nothing to resume
                kept = os.path.isdir(cell.out)
                return result(
                    "interrupted",
                    time.perf_counter() - t0,
                    "output left unfinished (status running); re-run to resume"
                    if kept
                    else "stopped before its first block was written (no output); re-run to "
                    "start it",
                )
            failed = os_error(exc)  # a full disk: what it is and what to do, as the CLI says
            if failed is not None:
                message = describe_os_error(failed, resumes=True)
                return result("failed", time.perf_counter() - t0, message)
            died = _workers_died(exc, self.client)
            if died:
                return result("failed", time.perf_counter() - t0, died)
            return result(
                "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {one_line(exc)}"
            )

    def _run_cell(self, cell: Cell, result: Callable[..., CellResult], t0: float) -> CellResult:
        from .runner import reconstruct

        overwrite = self.execution.overwrite
        previous = self.status.get(cell.name)
        if previous == "complete" and not overwrite:
            mismatch = _provenance_mismatch(cell)
            if mismatch:
                return result(
                    "failed",
                    None,
                    f"{cell.out} is complete but was made with {mismatch}; "
                    + use_overwrite("redo it")
                    + _redo_alone(cell),
                )
            scores = _metrics(cell, self.client) if self.metrics else None
            return result("skipped", None, "complete already", scores)
        options = _reconstruct_options(cell)
        align_mode, align_method = _alignment_asked(cell)
        if align_mode is not False and os.path.realpath(cell.acquisition) in self.resuming:
            # an unfinished output of this acquisition resumes with the shifts it was begun
            # with: aligning again would change them (and its fingerprint: refused)
            logger.info(
                "%s: not aligned: an unfinished output of %s is resumed with its shifts",
                cell.name,
                printable(cell.acquisition),
            )
            align_mode = False
        aligned = _align_cell(cell, self.client, align_mode, align_method, self.aligned)
        if self.stop.is_set():
            return result("not run", None, "batch interrupted before the reconstruction")
        on_cluster = self.execution.replace(client=self.client, cluster=None, scheduler=None)
        reconstruct(
            cell.acquisition, cell.out, execution=on_cluster.replace(progress=False), **options
        )
        seconds = time.perf_counter() - t0
        scored = self.metrics and not self.stop.is_set()
        scores = _metrics(cell, self.client) if scored else None
        notes = [n for n, on in ((aligned, aligned), ("resumed", previous == "running")) if on]
        return result("done", seconds, ", ".join(notes), scores)


def _workers_died(exc: BaseException, client: Any) -> str:
    """What a cell's row says when Dask gave up on one of its tasks because the workers
    running it died (``KilledWorker``); ``""`` for any other error.

    Dask's own text names a task key and a worker address and nothing a user can act on.
    On a batch queue the usual cause is a job reaching its walltime while a block runs
    (each try then dies the same way): say the walltime and where the job logs are.
    """
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - distributed is a dependency
        return ""
    if not isinstance(exc, KilledWorker):
        return ""
    import dask

    n = exc.allowed_failures + 1
    said = (
        f"{n} worker(s) died running one of its blocks (Dask gives up then: "
        "distributed.scheduler.allowed-failures)"
    )
    resume = "the finished blocks stay: run the batch again to resume"
    # dask-jobqueue's clusters keep their job options here (what the job script is made of)
    job = getattr(getattr(client, "cluster", None), "_job_kwargs", None)
    if not isinstance(job, Mapping):
        return (
            f"{said}: killed, or out of memory (a smaller block_size or memory_budget, or "
            f"more memory per worker); {resume}"
        )
    kind = job.get("config_name", "slurm")
    walltime = job.get("walltime") or dask.config.get(f"jobqueue.{kind}.walltime", None)
    logs = job.get("log_directory") or dask.config.get(f"jobqueue.{kind}.log-directory", None)
    where = (
        logs or "the batch system's default place (SLURM: slurm-JOBID.out where the batch began)"
    )
    return (
        f"{said}: their jobs were cancelled, ran out of memory or reached their walltime "
        f"({walltime}, jobqueue.{kind}.walltime); the job logs in {where} say which. A block "
        f"that needs longer than the walltime never finishes: raise it or lower block_size; "
        f"{resume}"
    )


def _redo_alone(cell: Cell) -> str:
    """What to do about one cell's output that only ``--overwrite`` would replace: in a
    batch, that redoes every complete cell too."""
    return (
        f", but in a batch that redoes every cell: to redo {cell.name!r} alone, remove "
        f"{quoted(cell.out)} and run the batch again"
    )


def _existing_status(cell: Cell) -> str | None:
    if not os.path.isdir(cell.out):
        return None
    from .volume import open_volume

    try:
        return open_volume(cell.out, mode="r").status
    except SxtdistError:
        return None


_ALIGN_LOCKS: dict[str, threading.Lock] = {}
_ALIGN_LOCKS_GUARD = threading.Lock()


def _align_cell(
    cell: Cell, client: Any, mode: str | bool, method: str | None, done: set[str]
) -> str:
    """Align the cell's acquisition first when asked; what its row says of it (``""``
    when it was not aligned now; ``"aligned"``, or the views to check and where the
    report is when the alignment is not trusted).

    ``mode``: ``"auto"`` aligns when some scan is not aligned yet (so a re-run
    does not align again), ``True`` always, ``False`` never. The shifts go into the
    acquisition's metadata (as ``sxtdist align``), the report next to the output.
    Cells sharing an acquisition align it once: one lock per acquisition, and
    ``done`` holds the acquisitions this batch aligned already.
    """
    if mode is False:
        return ""
    from .alignment import align
    from .dataset import open_acquisition

    key = os.path.realpath(cell.acquisition)
    with _ALIGN_LOCKS_GUARD:
        lock = _ALIGN_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key in done:
            return ""
        acq = open_acquisition(cell.acquisition, "r")
        if mode == "auto" and acq.aligned:
            return ""
        # its status lines are the cell's details (logs.cell_messages_as_details)
        found = align(
            cell.acquisition, None, method=method, client=client, report=_report_path(cell),
            progress=False,
        )  # fmt: skip
        done.add(key)
    # The alignment's own warning does not name the cell (many run at once): the row does.
    if found.verdict == "trusted":
        return "aligned"
    return f"aligned: {found.verdict} (report {_report_path(cell)})"


def _provenance_mismatch(cell: Cell) -> str:
    """Which requested options a complete output was not made with ('' if none)."""
    from .runner import asked_iterations
    from .volume import open_volume

    prov = dict(open_volume(cell.out, mode="r").meta.get("provenance", {}))
    prov["iterations"] = asked_iterations(prov)  # what was asked for, not the count it chose
    want = {
        "method": cell.options.get("method", "cgne"),
        "iterations": cell.options.get("iterations", AUTO),
        "oracle": bool(cell.options.get("oracle", False)),
    }
    if "scans" in cell.options:
        want["scans"] = list(cell.options["scans"])
    if os.path.abspath(prov.get("input", cell.acquisition)) != os.path.abspath(cell.acquisition):
        return f"input {prov.get('input')}"
    diff = [f"{k}={prov.get(k)!r}" for k, v in want.items() if k in prov and prov[k] != v]
    return ", ".join(diff)


def _metrics(cell: Cell, client: Any) -> dict[str, float | str | None]:
    """:func:`cell_metrics` of one cell, computed on a worker."""
    fut = client.submit(cell_metrics, cell.acquisition, cell.out, pure=False)
    try:
        return fut.result()
    finally:
        fut.release()


def cell_metrics(acquisition: str, volume: str) -> dict[str, float | str | None]:
    """The summary's metric columns (:data:`METRICS`) of one output against its truth.

    Empty (``{}``) when the acquisition has no truth or the grids differ. Reads the
    volume and the truth slab by slab (:func:`sxtdist.scoring.score`) and the central
    ROI cube (:func:`sxtdist.scoring.resolution`).
    """
    from . import scoring
    from .dataset import open_acquisition
    from .volume import open_volume

    acq = open_acquisition(acquisition, "r")
    vol = open_volume(volume, mode="r")
    if acq.truth is None or tuple(acq.truth.shape) != tuple(vol.shape):
        return {}
    regions = scoring.Regions.of(acq)
    s = scoring.score(vol.level(0), acq.truth, regions)
    out: dict[str, float | str | None] = {"psnr_roi_db": s.psnr_roi, "psnr_cell_db": s.psnr_cell}
    res = scoring.resolution(vol.level(0), acq.truth, regions)
    if res is not None:
        out["fsc_nm"] = scoring.describe(res.fsc_one_seventh_nm)
        out["mtf50_nm"] = scoring.describe(res.mtf50_nm)
    return out


# --- summary -----------------------------------------------------------------------------

_COLUMNS = ["cell", "status", "seconds", *METRICS, "output", "message"]


def write_summary(rows: Iterable[CellResult], path: str | os.PathLike[str]) -> None:
    """Write the summary CSV (atomically: a reader never sees half a table).

    Rewritten as each cell starts and ends, long after the batch checked ``path``: each
    time it is checked again as it is replaced (a summary of sxtdist's, or nothing), so a
    user's file put there meanwhile is refused (:class:`~sxtdist.errors.OutputExistsError`),
    not replaced."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with (
        replacing_file(path, "summary") as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        w = csv.DictWriter(f, fieldnames=_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r.row())


def read_summary(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a summary CSV as dictionaries of strings."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # kept by Excel: a BOM
        return list(csv.DictReader(f))


def format_summary(rows: Sequence[CellResult]) -> str:
    """The summary as an aligned text table."""
    head = ["cell", "status", "time_s", *METRICS, "output", "message"]
    body = [[r.row()["seconds" if k == "time_s" else k] for k in head] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(lines)


__all__ = [
    "CELL_OPTIONS",
    "SUMMARY_NAME",
    "Cell",
    "CellResult",
    "cell_metrics",
    "format_summary",
    "read_manifest",
    "read_summary",
    "reconstruct_batch",
    "write_summary",
]
