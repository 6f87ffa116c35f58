"""``probe verify``: re-hash and check every file of a run, a sweep or a folder of sweeps."""

from __future__ import annotations

import argparse


def cmd_verify(args: argparse.Namespace) -> int:
    """One line per run, ``ok`` or ``damaged: <file>: <reason>``; exit 0 when every run is intact, 1 otherwise."""
    from probe.store.verify import verify_path

    reports = verify_path(args.path)
    for report in reports:
        print(report.line())
    return 0 if all(r.ok for r in reports) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify", help="check every file of a run or sweep",
                              description="Re-hash every epoch file against manifest.json and check run.json, "
                                          "manifest.json, HDF5 safety and record shapes. Prints one line per run, "
                                          "'ok' or 'damaged: <file>: <reason>'. Exit code 0 when every run is intact, "
                                          "1 when any is damaged, 2 when PATH is not a run, a sweep or a folder of "
                                          "sweeps.")
    p.add_argument("path", help="run directory, sweep directory or folder of sweeps")
    p.set_defaults(func=cmd_verify)
