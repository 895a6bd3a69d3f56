"""Validation of landing lines in SQL, generated from the event contract
(``certpipeline.events``): one reason per rejected line, NULL for a valid one.

``VALIDATION_SQL`` reads the relation ``file_lines`` (file, line_number, raw,
oversized_reason; ingestion's local Arrow table of a batch) and gives each line
its parsed envelope, payload and ``reason``.
"""

from __future__ import annotations

from certpipeline import events as ev
from certpipeline import sql_literals

# Timestamps outside this window are typos or corrupt exports, not history.
EARLIEST_TIMESTAMP = "1970-01-01"
LATEST_TIMESTAMP = "2100-01-01"

_KIND_JSON_TYPES = {
    ev.STRING: ("VARCHAR",),
    ev.BOOL: ("BOOLEAN",),
    ev.INT: ("BIGINT", "UBIGINT"),
    ev.NUMBER: ("BIGINT", "UBIGINT", "DOUBLE"),
    ev.TIMESTAMP: ("VARCHAR",),
    ev.DATE: ("VARCHAR",),
    ev.STRING_LIST: ("ARRAY",),
    ev.STRING_MAP: ("OBJECT",),
}
_KIND_WORDS = {
    ev.STRING: "a string",
    ev.BOOL: "true or false",
    ev.INT: "an integer",
    ev.NUMBER: "a number",
    ev.TIMESTAMP: "an ISO-8601 timestamp",
    ev.DATE: "an ISO-8601 date",
    ev.STRING_LIST: "a list of strings",
    ev.STRING_MAP: "an object of string values",
}

PAYLOAD_FIELD_NAMES: tuple[str, ...] = tuple(
    sorted({field.name for fields in ev.EVENT_TYPES.values() for field in fields})
)


def _in_range_timestamp(value_sql: str) -> str:
    return (
        f"coalesce(try_cast({value_sql} AS TIMESTAMPTZ) "
        f"BETWEEN TIMESTAMPTZ '{EARLIEST_TIMESTAMP}' AND TIMESTAMPTZ '{LATEST_TIMESTAMP}', false)"
    )


def _field_checks(field: ev.Field) -> list[tuple[str, str]]:
    """(condition that means the field is bad, reason) pairs, in check order.

    ``p`` is the payload parsed once into a struct of one small JSON value per
    known field (null when absent or JSON null, which count as missing)."""
    value_json = f'p."{field.name}"'
    json_type = f"json_type({value_json})"
    value = f"json_extract_string({value_json}, '$')"
    checks: list[tuple[str, str]] = []
    if field.required:
        checks.append((f"{value_json} IS NULL", f"payload.{field.name} is required"))
    present = f"{value_json} IS NOT NULL"
    allowed_types = ", ".join(sql_literals.text(t) for t in _KIND_JSON_TYPES[field.kind])
    must_be = f"payload.{field.name} must be {_KIND_WORDS[field.kind]}"
    checks.append((f"{present} AND {json_type} NOT IN ({allowed_types})", must_be))
    if field.kind in (ev.TIMESTAMP, ev.DATE):
        # One cast on the common path; which reason applies is worked out
        # only for the rare bad value.
        checks.append((
            f"{present} AND NOT {_in_range_timestamp(value)}",
            f"CASE WHEN try_cast({value} AS TIMESTAMPTZ) IS NULL THEN {sql_literals.text(must_be)} "
            f"ELSE {sql_literals.text(f'payload.{field.name} must be between {EARLIEST_TIMESTAMP} and {LATEST_TIMESTAMP}')} END",
        ))
    if field.kind == ev.STRING_LIST:
        checks.append(
            (f"{present} AND len(list_filter(json_type({value_json}, '$[*]'), lambda t: t <> 'VARCHAR')) > 0",
             must_be)
        )
    if field.kind == ev.STRING_MAP:
        checks.append(
            (f"{present} AND len(list_filter(json_type({value_json}, '$.*'), lambda t: t <> 'VARCHAR')) > 0",
             must_be)
        )
    if field.allowed:
        allowed = ", ".join(sql_literals.text(a) for a in field.allowed)
        checks.append((f"{present} AND {value} NOT IN ({allowed})", f"payload.{field.name} must be one of: {', '.join(field.allowed)}"))
    if field.minimum is not None:
        checks.append((f"{present} AND try_cast({value} AS DOUBLE) < {field.minimum}", f"payload.{field.name} must be >= {field.minimum:g}"))
    if field.maximum is not None:
        checks.append((f"{present} AND try_cast({value} AS DOUBLE) > {field.maximum}", f"payload.{field.name} must be <= {field.maximum:g}"))
    return checks


def _payload_reason_sql() -> str:
    branches = []
    for event_type, fields in ev.EVENT_TYPES.items():
        checks = [check for field in fields for check in _field_checks(field)]
        inner = " ".join(
            f"WHEN {cond} THEN {reason if reason.startswith('CASE ') else sql_literals.text(reason)}" for cond, reason in checks
        )
        branches.append(f"WHEN event_type = {sql_literals.text(event_type)} THEN CASE {inner} END")
    return "CASE " + " ".join(branches) + " END"


def _struct_of_json(names) -> str:
    """A json_transform structure that parses an object once into one JSON value per name."""
    return sql_literals.text("{" + ", ".join(f'"{name}": "JSON"' for name in names) + "}")


def _validation_sql() -> str:
    """Each line is parsed once as a whole and once more for its payload
    (``json_transform`` into structs of small JSON values); every check then
    looks at those small values, not at the line again."""
    known_types = ", ".join(sql_literals.text(t) for t in ev.EVENT_TYPES)
    return f"""
    WITH decoded AS (
        SELECT file, line_number, raw, oversized_reason, try(decode(raw)) AS line FROM file_lines
    ), parsed AS (
        SELECT *, try_cast(line AS JSON) AS doc,
            -- A valid JSON text is an object exactly when it starts with a brace.
            starts_with(ltrim(line, e' \t\r\n'), '{{') AS is_object
        FROM decoded
    ), envelope AS (
        SELECT *,
            CASE WHEN is_object THEN json_transform(doc, {_struct_of_json(ev.ENVELOPE_FIELDS)}) END AS env
        FROM parsed
    ), fields AS (
        SELECT *,
            json_type(env.event_id) AS event_id_type,
            json_extract_string(env.event_id, '$') AS event_id,
            json_type(env.event_type) AS event_type_type,
            json_extract_string(env.event_type, '$') AS event_type,
            json_type(env.occurred_at) AS occurred_at_type,
            json_extract_string(env.occurred_at, '$') AS occurred_at_text,
            json_type(env.payload) AS payload_type,
            env.payload AS payload,
            CASE WHEN json_type(env.payload) = 'OBJECT'
                THEN json_transform(env.payload, {_struct_of_json(PAYLOAD_FIELD_NAMES)}) END AS p
        FROM envelope
    )
    SELECT file, line_number, raw, line, event_id, event_type, payload,
        try_cast(occurred_at_text AS TIMESTAMPTZ) AS occurred_at,
        CASE
            WHEN oversized_reason IS NOT NULL THEN oversized_reason
            WHEN line IS NULL THEN 'line is not valid UTF-8'
            WHEN trim(line) = '' THEN 'empty line'
            WHEN doc IS NULL THEN 'not valid JSON'
            WHEN NOT is_object THEN 'not a JSON object'
            WHEN event_id_type IS NULL THEN 'event_id is required'
            WHEN event_id_type <> 'VARCHAR' OR event_id = '' THEN 'event_id must be a non-empty string'
            WHEN event_type_type IS NULL THEN 'event_type is required'
            WHEN event_type_type <> 'VARCHAR' THEN 'event_type must be a string'
            WHEN event_type NOT IN ({known_types}) THEN 'unknown event_type: ' || left(event_type, 100)
            WHEN occurred_at_type IS NULL THEN 'occurred_at is required'
            WHEN occurred_at_type <> 'VARCHAR' OR try_cast(occurred_at_text AS TIMESTAMPTZ) IS NULL
                THEN 'occurred_at must be an ISO-8601 timestamp'
            WHEN NOT {_in_range_timestamp('occurred_at_text')}
                THEN 'occurred_at must be between {EARLIEST_TIMESTAMP} and {LATEST_TIMESTAMP}'
            WHEN payload_type IS NULL THEN 'payload is required'
            WHEN payload_type <> 'OBJECT' THEN 'payload must be a JSON object'
            ELSE {_payload_reason_sql()}
        END AS reason
    FROM fields
    """


VALIDATION_SQL = _validation_sql()
