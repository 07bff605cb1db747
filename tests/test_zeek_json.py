"""Kafka message parsing: every kind of bad record is rejected with its reason; the rest go on."""

import json

import pytest

from nids_core.zeek_json import parse_json_records

GOOD = {
    "ts": 1575413096.052279,
    "uid": "CH53301MTU21BMj2Bj",
    "id.orig_h": "10.18.20.97",
    "id.orig_p": 49187,
    "id.resp_h": "10.18.20.8",
    "id.resp_p": 88,
    "proto": "tcp",
    "service": "krb_tcp",
    "duration": 0.0012,
    "orig_bytes": 242,
    "resp_bytes": 283,
    "conn_state": "RSTR",
    "missed_bytes": 0,
    "history": "ShADdFar",
    "orig_pkts": 4,
    "orig_ip_bytes": 414,
    "resp_pkts": 4,
    "resp_ip_bytes": 455,
}


def rec(**changes) -> bytes:
    d = {**GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"ts": 1.0, "uid": ', "invalid JSON"),
        (b"\xff\xfe\x00{", "invalid JSON"),
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
    ],
)
def test_bad_record_is_rejected_with_reason_and_batch_goes_on(value, reason):
    values = [rec(uid="Ca"), value, rec(uid="Cb")]
    parsed = parse_json_records(values, [10, 11, 12])
    assert parsed.flows["uid"].to_list() == ["Ca", "Cb"]
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
