"""The findings table: the core's region descriptions (outputs.findings.describe_regions) as
the rows the module shows under the sliders and exports beside report.json.

Pure Python (no Qt, no MRML): the widget puts these rows into its QTableWidget.
"""
from __future__ import annotations

import csv
import io

COLUMNS = ("#", "Location", "mL", "Peak")
CSV_FIELDS = ("id", "location", "volume_ml", "peak_score", "mean_score", "hemisphere", "lobe",
              "centroid_r_mm", "centroid_a_mm", "centroid_s_mm", "at_brain_edge")
UNNAMED_LOCATION = "unnamed location"


def location_text(finding: dict) -> str:
    location = finding.get("location") or UNNAMED_LOCATION
    return f"{location} (at the brain's edge)" if finding.get("at_brain_edge") else location


def table_rows(findings: list[dict]) -> list[tuple[str, str, str, str]]:
    """(number, location, volume in mL, peak score) per finding, in the given order."""
    return [(str(f["id"]), location_text(f), f"{float(f['volume_ml']):.2f}", f"{float(f['peak_score']):.3g}")
            for f in findings]


def csv_text(findings: list[dict]) -> str:
    """The table as CSV, with the centroid in the input's RAS coordinates (mm)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for f in findings:
        r, a, s = (float(v) for v in f["centroid_ras_mm"])
        writer.writerow([f["id"], f.get("location") or "", f"{float(f['volume_ml']):.4f}",
                         f"{float(f['peak_score']):.6g}", f"{float(f.get('mean_score', 0.0)):.6g}",
                         f.get("hemisphere") or "", f.get("lobe") or "", f"{r:.2f}", f"{a:.2f}", f"{s:.2f}",
                         str(bool(f.get("at_brain_edge"))).lower()])
    return out.getvalue()
