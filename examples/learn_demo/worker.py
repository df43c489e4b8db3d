"""The demo's Python child: reads the data file and prints how many records it holds."""

import csv
from pathlib import Path

with open(Path(__file__).resolve().parent / "data.csv", newline="", encoding="utf-8") as handle:
    rows = list(csv.DictReader(handle))
print(f"{len(rows)} records")
