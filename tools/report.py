"""`oncolattice report RUN.h5 --out DIR`: plots and a self-contained HTML page.

The report reads a run file, finished or still being written, and writes into
DIR:

    counts.png        cells (voxels) by kind over time, log scale
    functional.png    functional tissue left, overall and per organ
    tumour.png        tumour volume (mm³) and equivalent-sphere radius (µm)
    vessels.png       vessel density and perfused fraction, above hypoxic
                      tumour cells and peak VEGF (vessel growth follows hypoxia)
    slices.png        axial mid-plane through the tumour at a few snapshot
                      times, coloured by kind; oxygen and VEGF at the last one
    summary.json      the headline numbers, and the voxel kinds as the file names them
    index.html        all of the above in one file (PNG data URIs, inline CSS)

A run file with a body (site lattices, or a colony registry: a primary tumour
with a regional lymph node and distant organs) also gets a metastasis section
in index.html and a ``metastasis`` block in summary.json, with:

    metastasis_timeline.png   CTCs in blood and lymph (and per 7.5 mL), shedding,
                              circulation events, colonies by class and stage
    body_map.png              the primary and each site on a schematic body, a disc
                              of area proportional to its tumour + dormant cells
    colony_sizes.png          each colony's diameter over time by class (log), with
                              the 0.2 mm and 2 mm stage thresholds

and the colony registry as a table.  The report of a file of one lattice has none
of these.

This module is the command only; the work is done by
:mod:`tools.report_series` (the data, read from the run file),
:mod:`tools.report_plots` (the matplotlib figures) and
:mod:`tools.report_html` (the page, and writing the folder).  They are
imported when the command runs, so ``import tools.report`` stays cheap (the
CLI imports it to build its parser) and never loads matplotlib.
"""
from __future__ import annotations

from pathlib import Path

HELP = "write plots, summary.json and a self-contained index.html for a run file"


def add_arguments(parser) -> None:
    """The `report` sub-command's arguments."""
    parser.add_argument("run", type=Path, metavar="RUN.h5",
                        help="run file written by `oncolattice run` (may still be running)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for index.html, summary.json and the PNG plots "
                             "(created if needed; files of the same name are replaced)")
    parser.add_argument("--lattice", metavar="NAME",
                        help="lattice for slices and voxel size (default: the first)")


def command(args) -> int:
    """Write the report; print where the page is."""
    from tools.report_html import write_report
    summary = write_report(args.run, args.out, lattice=args.lattice)
    print(f"report: {summary['report']['index']} (run status {summary['status']}, "
          f"{summary['steps']} steps, {summary['snapshots']} snapshots)")
    return 0
