"""Readers for the three Zeek file forms, plain and gzip, on real captures."""

import gzip
import shutil

import polars as pl
import pytest

from nids_core.schema import FLOW_SCHEMA
from nids_core.zeek.files import (
    FileTooLarge,
    ZeekFormat,
    capture_name,
    detect_format,
    gunzip,
    read_bytes,
    read_zeek_file,
)
from tests.resources import FIXTURES, iot23


@pytest.mark.parametrize(
    ("name", "flows", "malicious"),
    [
        ("CTU-Honeypot-Capture-4-1-labeled.csv.gz", 452, 0),
        ("CTU-Malware-Capture-8-1-labeled.csv.gz", 10_403, 8_222),
        ("CTU-Malware-Capture-34-1.conn.log.labeled.gz", 23_145, 21_222),
    ],
)
def test_iot23_captures_parse_completely(name, flows, malicious):
    parsed = read_zeek_file(iot23(name))
    assert parsed.rejects.height == 0
    assert parsed.flows.height == flows
    assert parsed.flows.filter(pl.col("label") == "malicious").height == malicious
    assert set(parsed.flows["label"].unique()) <= {"benign", "malicious"}
    assert parsed.flows["capture"].unique().to_list() == [capture_name(name)]
    assert dict(parsed.flows.drop("position").schema) == FLOW_SCHEMA


def test_native_tsv_with_iot23_three_space_quirk():
    path = iot23("CTU-Malware-Capture-34-1.conn.log.labeled.gz")
    assert detect_format(read_bytes(path)) is ZeekFormat.TSV
    flows = read_zeek_file(path).flows
    first = flows.row(0, named=True)
    # The first row: `...0 0 -   Benign   -`: tunnel_parents unset, label split off correctly.
    assert first["uid"] == "CrDn63WjJEmrWGjqf"
    assert first["orig_h"] == "192.168.1.195" and first["resp_p"] == 80
    assert first["tunnel_parents"] is None
    assert first["label"] == "benign" and first["detailed_label"] is None
    counts = dict(flows["detailed_label"].value_counts().iter_rows())
    assert counts == {"DDoS": 14394, "C&C": 6706, "PartOfAHorizontalPortScan": 122, None: 1923}


def test_native_tsv_plain_and_gzip_are_identical(tmp_path):
    plain = read_zeek_file(FIXTURES / "conn.log", capture="s")
    gz = tmp_path / "conn.log.gz"
    with open(FIXTURES / "conn.log", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    zipped = read_zeek_file(gz, capture="s")
    assert plain.flows.height == 360 and plain.rejects.height == 0
    assert plain.flows.equals(zipped.flows)
    # `(empty)` is an empty set, not unset.
    assert plain.flows["tunnel_parents"].list.len().max() == 0
    assert plain.flows["local_orig"].null_count() == 360


def test_json_lines_with_absent_optional_fields():
    parsed = read_zeek_file(FIXTURES / "conn.json.log")
    assert parsed.flows.height == 50 and parsed.rejects.height == 0
    assert parsed.flows["label"].null_count() == 50
    row = parsed.flows.row(0, named=True)
    assert row["uid"] == "CH53301MTU21BMj2Bj" and row["service"] == "krb_tcp"
    assert row["ts"].timestamp() == pytest.approx(1575413096.052279)


def test_csv_with_zeek_column_names_and_lowercase_labels():
    parsed = read_zeek_file(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz"))
    assert parsed.flows["label"].unique().to_list() == ["benign"]  # written `benign` there
    row = parsed.flows.row(0, named=True)
    assert row["uid"] == "CGm6jB4dXK71ZDWUDh" and row["ts"].timestamp() == 1540469303
    assert row["service"] is None and row["local_orig"] is None


def test_bad_rows_in_a_file_are_rejected_with_reason_and_line(tmp_path):
    text = (FIXTURES / "conn.log").read_text().splitlines()
    header = [line for line in text if line.startswith("#")][:8]
    rows = [line for line in text if not line.startswith("#")][:3]
    broken = rows[1].split("\t")
    broken[9] = "-17"  # orig_bytes
    path = tmp_path / "bad.log"
    path.write_text("\n".join([*header, rows[0], "\t".join(broken), rows[2]]) + "\n")
    parsed = read_zeek_file(path)
    assert parsed.flows.height == 2
    assert parsed.rejects["error"].to_list() == ["negative orig_bytes"]
    assert parsed.rejects["position"].to_list() == [10]


def test_decompression_is_bounded_and_the_error_names_the_file(tmp_path):
    """Issue 25: a 6 MB gzip of zeros once took `nids model evaluate` to 8 GB. It is read in
    chunks and refused as soon as it passes the limit; a plain file past it is refused
    before it is read; a file within it reads as before."""
    bomb = tmp_path / "zeros.log.gz"
    bomb.write_bytes(gzip.compress(bytes(8 * 2**20)))
    with pytest.raises(FileTooLarge, match=r"zeros\.log\.gz: decompresses to more than 2 MB"):
        read_zeek_file(bomb, max_bytes=2 * 2**20)
    plain = tmp_path / "big.log"
    plain.write_bytes(bytes(3 * 2**20))
    with pytest.raises(FileTooLarge, match=r"big\.log: is larger than 2 MB"):
        read_bytes(plain, max_bytes=2 * 2**20)
    # Several gzip members (as `cat a.gz b.gz` makes) are all read.
    assert gunzip(gzip.compress(b"a" * 10) + gzip.compress(b"b" * 10)) == b"a" * 10 + b"b" * 10
    capture = iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")
    assert read_zeek_file(capture, max_bytes=2 * 2**20).flows.height == 452


def test_model_evaluate_reports_a_file_past_the_limit_and_goes_on(tmp_path):
    from nids_core.evaluation.files import evaluate_file

    bomb = tmp_path / "zeros.log.gz"
    bomb.write_bytes(gzip.compress(bytes(4 * 2**20)))
    result = evaluate_file(bomb, {}, max_bytes=2**20)
    assert result.error is not None and "decompresses to more than 1 MB" in result.error
    assert "ERROR" in result.line() and not result.counted
