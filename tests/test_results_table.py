"""assets/ogbench/RESULTS.md says what the bundled sweeps say: regenerating it from them changes nothing."""

import csv
import subprocess
import sys
from pathlib import Path

from sorl_core.studies.sweep_schema import recipe

REPO = Path(__file__).resolve().parents[1]


def test_results_table_matches_the_bundled_sweeps():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_results_table.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = (REPO / "assets" / "ogbench" / "RESULTS.md").read_text()
    for folder in (REPO / "assets" / "ogbench").glob("*/sweep.csv"):
        method = next(csv.DictReader(folder.read_text().splitlines()))["method"]
        label = "M_BTT=" if method == "sorl" else f"baseline {method})"
        assert f"| {recipe(folder.parent.name)} ({label}" in text  # every policy has its row, named by its method
    assert "97% / 96%" in text  # the paper's SORL / FQL on cube-single, beside ours
