"""Kafka message parsing: every kind of bad record is rejected with its reason; the rest go on."""

import json

import pytest

from nids_core.zeek.json_log import parse_json_records
from tests.support.ingest import GOOD, rec


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"ts": 1.0, "uid": ', "invalid JSON"),
        (b"\xff\xfe\x00{", "invalid UTF-8"),
        (b"[1, 2]", "not a JSON object: list"),
        (rec(uid=...), "missing uid"),
        (rec(uid=""), "missing uid"),
        (rec(**{"id.orig_h": ...}), "missing id.orig_h"),
        (rec(ts="yesterday"), "wrong type for ts: yesterday"),
        (rec(orig_bytes="many"), "wrong type for orig_bytes: many"),
        (rec(duration=[1]), "wrong type for duration"),
        (rec(**{"id.resp_p": 70000}), "id.resp_p out of range"),
        (rec(resp_bytes=-5), "negative resp_bytes"),
        (b"", "empty message"),
        (None, "empty message"),
        (b"   ", "empty message"),
        (rec(history="x" * 70_000), "message too large: 70"),
        # Content that used to make the parser raise and halt the partition.
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid JSON: nested too deeply"),
        (b"[" * 20000 + b"]" * 20000, "invalid JSON: nested too deeply"),
        (
            rec(history=[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]),
            "wrong type for history",
        ),
        (b'{"conn": "abc"}', "`conn` wrapper holds a JSON string, not an object"),
        (b'{"conn": ""}', "`conn` wrapper holds a JSON string, not an object"),
        (b'{"conn": 5}', "`conn` wrapper holds a JSON number, not an object"),
        (b'{"conn": [1, 2]}', "`conn` wrapper holds a JSON array, not an object"),
        (b'{"conn": true}', "`conn` wrapper holds a JSON boolean, not an object"),
        (rec(ts="+10000-01-01T00:00:00"), "ts outside the plausible window: +10000-01-01"),
        (rec(ts=9999999999), "ts outside the plausible window: 9999999999"),
        (rec(ts=1e300), "wrong type for ts"),
        (rec(ts=315532799.0), "ts outside the plausible window: 315532799 not in [1990-01-01"),
        (rec(ts="1989-12-31T23:59:59Z"), "ts outside the plausible window"),
        (rec(duration="NaN"), "non-finite duration: NaN"),
        (rec(duration="inf"), "non-finite duration: inf"),
        (rec(duration="-Infinity"), "non-finite duration: -Infinity"),
        (rec(orig_bytes="NaN"), "wrong type for orig_bytes: NaN"),
        (rec(duration=...)[:-1] + b', "duration": NaN}', "invalid JSON: non-finite number NaN"),
        (rec(duration=...)[:-1] + b', "duration": -Infinity}', "non-finite number -Infinity"),
        (rec(duration=...)[:-1] + b', "duration": 1e999}', "number out of range: 1e999"),
        (b"\xef\xbb\xbf" + rec(), "invalid JSON: starts with a UTF-8 byte-order mark"),
        (rec()[:-1] + b', "uid": "Cforged"}', "duplicate JSON key 'uid'"),
        (
            json.dumps({"conn": GOOD})[:-2].encode() + b', "id.orig_h": "6.6.6.6"}}',
            "duplicate JSON key 'id.orig_h'",
        ),
        (rec(**{"id.orig_h": [1, 2]}), "wrong type for id.orig_h"),
        (rec(**{"id.resp_h": {"a": 1}}), "wrong type for id.resp_h"),
    ],
)
def test_bad_record_is_rejected_with_reason_and_batch_goes_on(value, reason):
    values = [rec(uid="Ca"), value, rec(uid="Cb")]
    parsed = parse_json_records(values, [10, 11, 12])
    assert parsed.flows["uid"].to_list() == ["Ca", "Cb"]
    assert parsed.flows["ts"].null_count() == 0
    assert parsed.flows["position"].to_list() == [10, 12]
    assert parsed.rejects.height == 1
    reject = parsed.rejects.row(0, named=True)
    assert reject["position"] == 11
    assert reject["raw"] == value
    assert reason in reject["error"]


def test_unknown_fields_are_ignored_and_the_record_kept():
    parsed = parse_json_records([rec(community_id="1:abc", vlan=7, orig_l2_addr="aa:bb")], [0])
    assert parsed.rejects.height == 0
    assert parsed.flows["uid"].to_list() == [GOOD["uid"]]


def test_wrapped_and_bare_records_mix_in_one_batch():
    wrapped = json.dumps({"conn": {**GOOD, "uid": "Cw"}}).encode()
    parsed = parse_json_records([rec(uid="Cb"), wrapped], [0, 1])
    assert parsed.flows["uid"].to_list() == ["Cb", "Cw"]
    assert parsed.flows["orig_bytes"].to_list() == [242, 242]


def test_iso8601_and_epoch_timestamps_agree():
    iso = rec(uid="Ci", ts="2019-12-03T22:44:56.052279Z")
    epoch = rec(uid="Ce", ts=1575413096.052279)
    offset = rec(uid="Co", ts="2019-12-03T23:44:56.052279+01:00")
    ts = parse_json_records([iso, epoch, offset], [0, 1, 2]).flows["ts"].to_list()
    assert ts[0] == ts[1] == ts[2]
    assert str(ts[0].tzinfo) == "UTC"


def test_labels_are_normalised():
    values = [
        rec(uid="C1", label="Malicious", **{"detailed-label": "DDoS"}),
        rec(uid="C2", label="benign", **{"detailed-label": "-"}),
        rec(uid="C3", label="Background"),
        rec(uid="C4", label="-"),
    ]
    flows = parse_json_records(values, [0, 1, 2, 3]).flows
    assert flows["label"].to_list() == ["malicious", "benign", None, None]
    assert flows["detailed_label"].to_list() == ["DDoS", None, None, None]


def test_pretty_printed_record_is_accepted():
    pretty = json.dumps(GOOD, indent=2).encode()
    parsed = parse_json_records([pretty], [5])
    assert parsed.rejects.height == 0 and parsed.flows["uid"].to_list() == [GOOD["uid"]]


def test_many_bad_records_in_a_large_batch_each_get_their_own_reason():
    values = [rec(uid=f"C{i}") if i % 97 else b"{broken" for i in range(5000)]
    parsed = parse_json_records(values, list(range(5000)))
    assert parsed.rejects.height == len(range(0, 5000, 97))
    assert parsed.flows.height == 5000 - parsed.rejects.height
    assert set(parsed.rejects["position"].to_list()) == set(range(0, 5000, 97))


def test_bulk_and_record_by_record_paths_give_the_same_flows():
    """A clean batch is parsed in bulk; one message that spans lines sends the batch down the
    record-by-record path. Both must give the same flows and rejects for the same records."""
    values = [rec(uid=f"C{i}", orig_bytes=i) for i in range(300)]
    values[7] = rec(uid="Cneg", resp_bytes=-1)  # rejected by value, in both paths
    bulk = parse_json_records(values, list(range(100, 400)))
    spanning = json.dumps({**GOOD, "uid": "Cpretty"}, indent=2).encode()
    slow = parse_json_records([*values, spanning], list(range(100, 401)))
    assert slow.flows.filter(slow.flows["uid"] != "Cpretty").equals(bulk.flows)
    assert bulk.rejects.equals(slow.rejects)
    assert bulk.rejects.row(0, named=True) == {
        "position": 107,
        "raw": values[7],
        "error": "negative resp_bytes",
    }


def test_two_objects_in_one_message_and_a_blank_message_do_not_shift_rows():
    """Joined as lines, these two would cancel out (one line too many, one skipped); each
    must still be rejected on its own and the records around them keep their offsets."""
    values = [rec(uid="Ca"), b'{"uid": "Cx"}\n{"uid": "Cy"}', b"   ", rec(uid="Cb")]
    parsed = parse_json_records(values, [0, 1, 2, 3])
    assert parsed.flows["uid"].to_list() == ["Ca", "Cb"]
    assert parsed.flows["position"].to_list() == [0, 3]
    reasons = dict(zip(parsed.rejects["position"], parsed.rejects["error"], strict=True))
    assert reasons[1].startswith("invalid JSON") and reasons[2] == "empty message"


def test_pretty_printed_record_with_a_duplicate_key_is_rejected_like_a_one_line_one():
    pretty = json.dumps(GOOD, indent=2).encode()[:-2] + b',\n  "uid": "Cforged"\n}'
    parsed = parse_json_records([rec(uid="Ca"), pretty], [0, 1])
    assert parsed.flows["uid"].to_list() == ["Ca"]
    assert parsed.rejects["error"].to_list() == ["duplicate JSON key 'uid'"]
    assert parsed.rejects["raw"].to_list() == [pretty]


def test_duplicate_keys_are_found_among_records_that_all_carry_unknown_fields():
    """A sensor adding `community_id` to every record must not hide a forged duplicate, and
    key-like text inside a string value is not a key."""
    values = [rec(uid=f"C{i}", community_id=f"1:{i}=", history='x":y') for i in range(200)]
    values[150] = values[150][:-1] + b', "ts": 1.0}'
    parsed = parse_json_records(values, list(range(200)))
    assert parsed.rejects.rows() == [(150, values[150], "duplicate JSON key 'ts'")]
    assert parsed.flows.height == 199


def test_the_plausible_window_is_configurable():
    from datetime import UTC, date, datetime, timedelta

    from nids_core.zeek.plausibility import PlausibleTime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    window = PlausibleTime(earliest=date(2019, 1, 1), max_ahead=timedelta(hours=1))
    values = [
        rec(uid="Cold", ts=datetime(2018, 6, 1, tzinfo=UTC).timestamp()),
        rec(uid="Cok", ts=(now + timedelta(minutes=59)).timestamp()),
        rec(uid="Cahead", ts=(now + timedelta(minutes=61)).timestamp()),
    ]
    parsed = parse_json_records(values, [0, 1, 2], plausible=window, now=now)
    assert parsed.flows["uid"].to_list() == ["Cok"]
    assert [e.split(":")[0] for e in parsed.rejects["error"]] == [
        "ts outside the plausible window"
    ] * 2


def test_ipv6_batches_are_counted_in_bulk_and_still_show_a_forged_key(monkeypatch):
    """Zeek writes IPv6 endpoints as strings opening with colons (`::1`, `::ffff:a.b.c.d`);
    their `"::` is not a key, so a clean batch of them passes the whole-batch key count
    without rereading any record in Python, and a forged duplicate among them is still
    rejected."""
    from nids_core.zeek import json_log

    hosts = ["::1", "::ffff:10.0.0.1", "fe80::1", "2001:db8::7"]
    values = [
        rec(uid=f"C{i}", **{"id.orig_h": hosts[i % 4], "id.resp_h": hosts[(i + 1) % 4]})
        for i in range(400)
    ]
    reread: list[bytes] = []
    real_loads = json_log.strict_loads
    monkeypatch.setattr(json_log, "strict_loads", lambda v: reread.append(v) or real_loads(v))
    clean = parse_json_records(values, list(range(400)))
    assert clean.rejects.is_empty() and clean.flows.height == 400
    # Stored canonical: an IPv4-mapped address as its IPv4 address (as Zeek writes it).
    assert clean.flows["orig_h"].to_list()[:4] == ["::1", "10.0.0.1", "fe80::1", "2001:db8::7"]
    assert reread == []

    values[9] = values[9][:-1] + b', "id.resp_h": "::2"}'
    forged = parse_json_records(values, list(range(400)))
    assert forged.rejects.rows() == [(9, values[9], "duplicate JSON key 'id.resp_h'")]
    assert forged.flows.height == 399


def test_one_host_written_several_ways_is_one_canonical_address_and_odd_forms_say_why():
    """Issue 25: `167772161`, `010.001.001.001` and `fe80::1%eth0` were stored as given (one
    host, several graph nodes). Addresses are stored in one canonical form; what cannot be
    read as one host is rejected with its reason; overlong and unprintable text is refused."""
    forms = {
        "10.1.1.1": "10.1.1.1",
        "::FFFF:10.1.1.1": "10.1.1.1",
        "::ffff:0a01:0101": "10.1.1.1",
        "FE80:0:0:0:0:0:0:1": "fe80::1",
        "fe80::1%eth0": "fe80::1",
        "2001:DB8::0007": "2001:db8::7",
    }
    values = [
        rec(uid=f"C{i}", **{"id.orig_h": given, "id.resp_h": "10.0.0.2"})
        for i, given in enumerate(forms)
    ]
    parsed = parse_json_records(values, list(range(len(values))))
    assert parsed.rejects.is_empty()
    assert parsed.flows["orig_h"].to_list() == list(forms.values())
    bad = [
        rec(uid="Cint", **{"id.orig_h": "167772161"}),
        rec(uid="Czero", **{"id.orig_h": "010.001.001.001"}),
        rec(uid="Czone", **{"id.resp_h": "10.0.0.1%eth0"}),
        rec(uid="Cjunk", **{"id.resp_h": "300.1.1.1"}),
        rec(uid="C" + "x" * 10_000),
        rec(uid="C\u202e\u0000gpj.exe"),
        rec(uid="Csvc", service="s" * 60_000),
    ]
    rejected = parse_json_records(bad, list(range(len(bad))))
    assert rejected.flows.is_empty()
    assert rejected.rejects["error"].to_list() == [
        "wrong type for id.orig_h: 167772161 (an integer, not an address)",
        "wrong type for id.orig_h: 010.001.001.001 (IPv4 with leading zeros, ambiguous)",
        "wrong type for id.resp_h: 10.0.0.1%eth0 (a zone on an IPv4 address)",
        "wrong type for id.resp_h: 300.1.1.1 (not an IP address)",
        "uid longer than 64 characters",
        "uid has control or bidirectional-format characters",
        "service longer than 256 characters",
    ]
