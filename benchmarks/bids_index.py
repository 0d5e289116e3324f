"""How long reading a BIDS dataset takes before any scan is touched: pybids' index of the files
and their sidecars, the tables joined, one session and one T1w chosen per subject.

    python benchmarks/bids_index.py --subjects 1000 10000

Each dataset has two sessions per subject (a T1w and its JSON sidecar in each), a sessions
table per subject, participants.tsv and participants.json. The scans are empty files: nothing
here reads them. Prints seconds per dataset and per 1000 subjects."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def write_dataset(root: Path, subjects: int) -> None:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "benchmark", "BIDSVersion": "1.9.0"})
    )
    rows = ["participant_id\tage\tsex"]
    for i in range(subjects):
        sub = f"sub-{i:05d}"
        rows.append(f"{sub}\t{60 + i % 30}\t{'MF'[i % 2]}")
        for session in ("M000", "M012"):
            anat = root / sub / f"ses-{session}" / "anat"
            anat.mkdir(parents=True)
            (anat / f"{sub}_ses-{session}_T1w.nii.gz").write_bytes(b"")
            (anat / f"{sub}_ses-{session}_T1w.json").write_text('{"MagneticFieldStrength": 3}')
        (root / sub / f"{sub}_sessions.tsv").write_text(
            "session_id\tdiagnosis\tmmse\nses-M000\tCN\t29\nses-M012\tMCI\t27\n"
        )
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    (root / "participants.json").write_text(
        json.dumps({"age": {"Description": "age", "Units": "years"}})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    from citab_cli.core.data import bids

    print("| subjects | files | read (s) | per 1000 subjects (s) |")
    print("|---|---|---|---|")
    for n in args.subjects:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder) / "ds"
            write_dataset(root, n)
            files = sum(1 for _ in root.rglob("*") if _.is_file())
            start = time.perf_counter()
            dataset = bids.read(root, bids.Rules(session="first"))
            seconds = time.perf_counter() - start
            assert len(dataset.scans) == n
            print(f"| {n} | {files} | {seconds:.1f} | {seconds / n * 1000:.2f} |", flush=True)


if __name__ == "__main__":
    main()
