"""Readers for the three Zeek file forms, plain and gzip, on real captures."""

import gzip
import shutil
from datetime import UTC, datetime

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
from tests.support.deployment import FIXTURES, data_file, iot23


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


def test_published_captures_with_relative_times_their_own_schema_and_repeats_are_read():
    """Stratosphere's Botnet-4 (relative `ts`, `detailedlabel`) and UWF-ZeekData22 (its own
    CSV schema, tactic labels, scientific-notation `ts`, rows repeated whole) are read
    whole; the plausible time window is for live ingestion only."""
    botnet = read_zeek_file(
        data_file("stratosphere-botnet-4/CTU-Malware-Capture-Botnet-4.conn.log.labeled.gz")
    )
    assert botnet.rejects.height == 0 and botnet.duplicates == 0
    assert botnet.flows.height == 22_913
    assert (botnet.flows["label"] == "malicious").sum() == 3_453
    assert botnet.flows["ts"].min() == datetime(1970, 1, 1, 0, 0, 10, 317322, tzinfo=UTC)
    recon = read_zeek_file(data_file("uwf-zeekdata22/uwf-zeekdata22-reconnaissance.csv.gz"))
    assert recon.rejects.height == 0
    assert (recon.flows.height, recon.duplicates) == (8_211, 10_260 - 8_211)
    assert recon.flows["uid"].n_unique() == recon.flows.height
    assert (recon.flows["label"] == "malicious").sum() == 8
    assert set(recon.flows["detailed_label"].drop_nulls()) == {"Reconnaissance"}
    discovery = read_zeek_file(data_file("uwf-zeekdata22/uwf-zeekdata22-discovery.csv.gz"))
    first = discovery.flows.row(0, named=True)
    assert (first["orig_h"], first["orig_p"], first["resp_h"], first["resp_p"]) == (
        "143.88.7.10",
        46411,
        "143.88.2.12",
        443,
    )
    assert first["proto"] == "tcp" and first["local_orig"] is False
    assert first["ts"] == datetime(2022, 2, 11, 9, 52, 26, 618264, tzinfo=UTC)
    assert (discovery.flows["label"] == "malicious").sum() == 2_086


def test_a_repeated_row_is_read_once_and_its_line_numbers_stay_right(tmp_path):
    lines = (FIXTURES / "conn.log").read_bytes().split(b"\n")
    first_data = next(i for i, line in enumerate(lines) if line and not line.startswith(b"#"))
    broken = lines[first_data + 3].replace(b"\tudp\t", b"\tudp\t", 1).split(b"\t")
    broken[0] = b"not-a-time"
    doubled = [*lines[: first_data + 1], lines[first_data], *lines[first_data + 1 : first_data + 3]]
    doubled += [b"\t".join(broken), *lines[first_data + 4 :]]
    path = tmp_path / "conn.log"
    path.write_bytes(b"\n".join(doubled))
    parsed = read_zeek_file(path)
    assert parsed.duplicates == 1
    assert parsed.flows.height == 359 and parsed.rejects.height == 1
    # The broken row is the 5th data line of the file (1-based line numbers).
    assert parsed.rejects["position"].to_list() == [first_data + 5]
