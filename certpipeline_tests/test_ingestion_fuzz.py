"""Property: whatever lines arrive, ingestion never crashes, every line ends up
accepted or rejected with a reason, and the per-file accounting holds. The
accepted events then flow through history and reports without errors."""

import datetime as dt
import gzip
import json
import tempfile
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certpipeline import events as ev
from certpipeline import ingestion, pipeline
from certpipeline.warehouse import DataPaths

DAY = dt.date(2026, 11, 20)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=30),
    st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20", "99999-01-01", "1969-12-31T23:59:59Z", "not a date",
                     "", "2026-02-30", "2026-11-20T10:00:00+14:00"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)


# Values at the edges of each numeric check and of the warehouse's column types.
NUMERIC_EDGES = [0, 1, 50, 99.5, 100, 101, 1200, 1201, -1, 1.5, 2**31 - 1, 2**31, 2**63 - 1, 2**64, 2**70, 1e308]


@st.composite
def plausible_events(draw):
    """Events shaped like the contract, with fields randomly missing, mistyped or out of range."""
    unusual = draw(st.integers(0, 9)) == 0
    event_type = draw(st.text(max_size=12) if unusual else st.sampled_from(sorted(ev.EVENT_TYPES)))
    fields = ev.EVENT_TYPES.get(event_type, ())
    payload = {}
    for field in fields:
        # Mostly well-formed, so events get past validation and into history
        # and reports; sometimes a field is missing or of any JSON shape.
        choice = draw(st.integers(0, 11))
        if choice == 0:
            continue
        if choice == 1:
            payload[field.name] = draw(json_values)
        elif field.allowed:
            payload[field.name] = draw(st.sampled_from(field.allowed))
        elif field.kind in (ev.TIMESTAMP, ev.DATE):
            payload[field.name] = draw(st.sampled_from(["2026-11-19T08:00:00Z", "2025-01-31", "2026-11-20T23:59:59"]))
        elif field.kind == ev.BOOL:
            payload[field.name] = draw(st.booleans())
        elif field.kind in (ev.INT, ev.NUMBER):
            payload[field.name] = draw(st.sampled_from(NUMERIC_EDGES))
        elif field.kind == ev.STRING_LIST:
            payload[field.name] = draw(st.lists(st.text(max_size=5), max_size=3))
        elif field.kind == ev.STRING_MAP:
            payload[field.name] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
        else:
            payload[field.name] = draw(st.sampled_from(["u1", "s1", "c1", "k1", "n1", "g1", "a1"]))
    if draw(st.booleans()):
        payload[draw(st.text(max_size=6))] = draw(json_values)  # unknown extra field
    event_id = draw(json_scalars if draw(st.integers(0, 9)) == 0 else st.text(min_size=1, max_size=6))
    envelope = {"event_id": event_id, "event_type": event_type,
                "occurred_at": None, "payload": payload}
    envelope["occurred_at"] = draw(st.one_of(
        st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-19T23:00:00", "2026-11-20T01:00:00+02:00"]), json_scalars))
    for key in list(envelope):
        if draw(st.integers(0, 19)) == 0:
            del envelope[key]
    return json.dumps(envelope, ensure_ascii=draw(st.booleans())).encode()


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


lines = st.one_of(
    plausible_events(),
    plausible_events(),
    plausible_events(),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=60).map(lambda t: t.replace("\n", "").encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible_events().map(lambda b: b[: len(b) // 2]),  # truncated
    st.integers(1, 3000).map(_deep),
    st.just(b'{"event_id": "big", "event_type": "user.deleted", "occurred_at": "2026-11-20T00:00:00Z", '
            b'"payload": {"user_id": "' + b"x" * 200_000 + b'"}}'),
    st.just(b'{"event_id": "nul\x00", "event_type": "user.deleted"}'),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(st.tuples(st.lists(lines, max_size=25), st.sampled_from(["plain", "gzip", "corrupt-gzip"])),
                      min_size=1, max_size=3))
def test_any_lines_are_accepted_or_rejected_and_accounted(files):
    with tempfile.TemporaryDirectory() as tmp:
        paths = DataPaths(Path(tmp))
        folder = paths.landing_day(DAY)
        folder.mkdir(parents=True)
        expected = {}
        for number, (file_lines, kind) in enumerate(files):
            data = b"\n".join(file_lines) + (b"\n" if file_lines else b"")
            name = f"part-{number:05d}.jsonl" + ("" if kind == "plain" else ".gz")
            if kind == "gzip":
                data = gzip.compress(data)
            elif kind == "corrupt-gzip":
                data = gzip.compress(data)[: max(1, len(data) // 3)] + b"\x00garbage"
            (folder / name).write_bytes(data)
            expected[f"date={DAY}/{name}"] = (kind, len(file_lines))

        paths.pipeline.mkdir()
        # A file: the report snapshots are written beside the working database.
        con = duckdb.connect(str(paths.work_db))
        con.execute("SET TimeZone = 'UTC'")
        pipeline.prepare_work_database(con)
        accounts = ingestion.ingest_day(con, paths, DAY)
        pipeline.refresh_entity_history(con)
        pipeline.build_report_snapshots(con, DAY)
        pipeline.referential_problems(con)

        assert sorted(a.file for a in accounts) == sorted(expected)
        for account in accounts:
            kind, count = expected[account.file]
            assert account.lines_read == account.accepted + account.duplicates + account.rejected
            if kind != "corrupt-gzip":
                assert account.lines_read == count
                numbers = con.execute(
                    "SELECT line_number FROM raw.events WHERE file = $f UNION ALL "
                    "SELECT line_number FROM raw.rejected_events WHERE file = $f ORDER BY 1", {"f": account.file}
                ).fetchall()
                assert [n for (n,) in numbers] == list(range(1, count + 1))
        assert con.execute("SELECT count(*) FROM raw.rejected_events WHERE reason IS NULL OR reason = ''").fetchall() == [(0,)]
        con.close()


EDGE_TIMESTAMPS = ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z", "2024-02-29", "2026-11-20T23:59:59",
                   "2026-11-20T00:30:00+02:00", "2025-01-31T12:00:00Z"]
IDS = ["u1", "u2", "s1", "c1", "k1", "n1", "n2", "g1", "g2", "a1", "=HYPERLINK(1)", "ü\u0000x", ""]


@st.composite
def well_formed_event(draw, number: int):
    """Any event type with every required field present and values at their edges."""
    event_type = draw(st.sampled_from(sorted(ev.EVENT_TYPES)))
    payload = {}
    for field in ev.EVENT_TYPES[event_type]:
        if not field.required and draw(st.booleans()):
            if draw(st.booleans()):
                payload[field.name] = None
            continue
        if field.allowed:
            value = draw(st.sampled_from(field.allowed))
        elif field.kind in (ev.TIMESTAMP, ev.DATE):
            value = draw(st.sampled_from(EDGE_TIMESTAMPS))
        elif field.kind == ev.BOOL:
            value = draw(st.booleans())
        elif field.kind in (ev.INT, ev.NUMBER):
            value = draw(st.sampled_from(NUMERIC_EDGES))
        elif field.kind == ev.STRING_LIST:
            value = draw(st.lists(st.sampled_from(IDS), max_size=3))
        elif field.kind == ev.STRING_MAP:
            value = draw(st.dictionaries(st.sampled_from(IDS), st.sampled_from(IDS), max_size=3))
        else:
            value = draw(st.sampled_from(IDS))
        payload[field.name] = value
    occurred_at = draw(st.sampled_from(EDGE_TIMESTAMPS))
    return json.dumps({"event_id": f"e{number}", "event_type": event_type, "occurred_at": occurred_at,
                       "payload": payload}).encode()


@st.composite
def well_formed_days(draw):
    count = draw(st.integers(1, 40))
    return [draw(well_formed_event(number)) for number in range(count)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lines=well_formed_days())
def test_well_formed_events_at_their_edges_flow_through_history_and_reports(event_lines):
    with tempfile.TemporaryDirectory() as tmp:
        paths = DataPaths(Path(tmp))
        folder = paths.landing_day(DAY)
        folder.mkdir(parents=True)
        (folder / "part-00000.jsonl").write_bytes(b"\n".join(event_lines) + b"\n")
        paths.pipeline.mkdir()
        # A file: the report snapshots are written beside the working database.
        con = duckdb.connect(str(paths.work_db))
        con.execute("SET TimeZone = 'UTC'")
        pipeline.prepare_work_database(con)
        [account] = ingestion.ingest_day(con, paths, DAY)
        assert account.lines_read == len(event_lines) == account.accepted + account.rejected
        pipeline.refresh_entity_history(con)
        for day in (DAY, dt.date(2099, 12, 31)):
            pipeline.build_report_snapshots(con, day)
        pipeline.referential_problems(con)
        con.close()
