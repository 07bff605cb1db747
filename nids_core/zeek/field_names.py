"""Zeek's conn fields as published datasets name them, mapped to Zeek's own names.

- Stratosphere's logs write the second label column `detailedlabel` (no dash).
- UWF-ZeekData22 (University of West Florida) has a schema of its own: `src_ip, src_port,
  dest_ip, dest_port, protocol` for `id.orig_h, id.orig_p, id.resp_h, id.resp_p, proto`,
  and its label is the MITRE ATT&CK tactic in `mitre_attack_tactics` (`none` = benign,
  any tactic = malicious; the tactic becomes the detailed label).
"""

from __future__ import annotations

import polars as pl

from nids_core.schema import LABEL_BENIGN, LABEL_MALICIOUS

LABEL_ALIASES = {"detailedlabel": "detailed-label", "detailed_label": "detailed-label"}
UWF_TO_ZEEK = {
    "src_ip": "id.orig_h",
    "src_port": "id.orig_p",
    "dest_ip": "id.resp_h",
    "dest_port": "id.resp_p",
    "protocol": "proto",
}
UWF_LABEL = "mitre_attack_tactics"
UWF_BENIGN = "none"


def is_uwf_zeekdata(columns: list[str]) -> bool:
    """Whether a table is in UWF-ZeekData22's schema (and not also in Zeek's)."""
    names = set(columns)
    return {"src_ip", "dest_ip", "dest_port"} <= names and "id.orig_h" not in names


def to_zeek_names(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame of string fields with Zeek's names: aliases renamed (where Zeek's name is
    not there already), UWF-ZeekData22's schema and tactic labels mapped."""
    present = set(frame.columns)
    renames = {a: z for a, z in LABEL_ALIASES.items() if a in present and z not in present}
    if is_uwf_zeekdata(frame.columns):
        renames |= {u: z for u, z in UWF_TO_ZEEK.items() if u in present}
    frame = frame.rename(renames)
    if UWF_LABEL in frame.columns and "label" not in frame.columns:
        tactic = pl.col(UWF_LABEL).str.strip_chars()
        known = tactic.is_not_null() & (tactic != "")
        benign = tactic.str.to_lowercase() == UWF_BENIGN
        frame = frame.with_columns(
            pl.when(known & benign)
            .then(pl.lit(LABEL_BENIGN))
            .when(known)
            .then(pl.lit(LABEL_MALICIOUS))
            .alias("label"),
            pl.when(known & ~benign).then(tactic).alias("detailed-label"),
        )
    return frame
