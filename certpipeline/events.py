"""The input event contract (contract section 2) as data.

Ingestion turns this table into SQL validation, the generator follows it and
the tests read it, so the contract is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass

# Field kinds. Each maps to a check on the JSON value in ingestion.
STRING = "string"
BOOL = "bool"
INT = "int"
NUMBER = "number"
TIMESTAMP = "timestamp"  # ISO-8601 string, UTC when it has no offset
DATE = "date"  # ISO-8601 date or timestamp string
STRING_LIST = "string_list"  # list of strings
STRING_MAP = "string_map"  # object, string to string


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool = False
    allowed: tuple[str, ...] | None = None  # for enumerated strings
    minimum: float | None = None
    maximum: float | None = None


def _f(name, kind=STRING, required=False, allowed=None, minimum=None, maximum=None):
    return Field(name, kind, required, tuple(allowed) if allowed else None, minimum, maximum)


ENROLLMENT_STATUSES = ("not_started", "in_progress", "completed", "failed")
SESSION_STATUSES = ("not_started", "ongoing", "ended", "archived")
MEMBER_ROLES = ("learner", "coach", "admin")

EVENT_TYPES: dict[str, tuple[Field, ...]] = {
    "user.upserted": (
        _f("user_id", required=True),
        _f("name", required=True),
        _f("email", required=True),
        _f("registered_at", TIMESTAMP, required=True),
        _f("custom_fields", STRING_MAP),
        _f("platform_role", allowed=("admin",)),
    ),
    "user.deleted": (_f("user_id", required=True),),
    "group.upserted": (
        _f("group_id", required=True),
        _f("name", required=True),
        _f("parent_group_id"),
    ),
    "group_member.added": (
        _f("group_id", required=True),
        _f("user_id", required=True),
        _f("role", required=True, allowed=MEMBER_ROLES),
    ),
    "group_member.removed": (
        _f("group_id", required=True),
        _f("user_id", required=True),
        _f("role", required=True, allowed=MEMBER_ROLES),
    ),
    "course.upserted": (
        _f("course_id", required=True),
        _f("name", required=True),
        _f("created_by"),
        _f("authors", STRING_LIST),
        _f("instructors", STRING_LIST),
    ),
    "session.upserted": (
        _f("session_id", required=True),
        _f("course_id", required=True),
        _f("name", required=True),
        _f("start_date", DATE),
        _f("end_date", DATE),
        _f("status", allowed=SESSION_STATUSES),
        _f("certificate_id"),
        _f("auto_reenrollment", BOOL),
        _f("created_by"),
        _f("mentors", STRING_LIST),
    ),
    "session.deleted": (_f("session_id", required=True),),
    "certificate.upserted": (
        _f("certificate_id", required=True),
        _f("title", required=True),
        _f("certificate_type"),
        _f("owner_group_id"),
        # The contract says int >= 1; 1200 (a century) bounds it so it fits the
        # warehouse's INTEGER column and calendar arithmetic.
        _f("validity_months", INT, minimum=1, maximum=1200),
    ),
    "enrollment.created": (
        _f("enrollment_id", required=True),
        _f("user_id", required=True),
        _f("session_id", required=True),
        _f("enrolled_at", TIMESTAMP, required=True),
        _f("auto_reenrolled", BOOL),
    ),
    "enrollment.progressed": (
        _f("enrollment_id", required=True),
        _f("status", required=True, allowed=ENROLLMENT_STATUSES),
        _f("progress_percent", NUMBER, minimum=0, maximum=100),
        _f("completed_at", TIMESTAMP),
    ),
    "enrollment.deleted": (_f("enrollment_id", required=True),),
    "certificate.issued": (
        _f("award_id", required=True),
        _f("user_id", required=True),
        _f("certificate_id", required=True),
        _f("issued_at", TIMESTAMP, required=True),
        _f("enrollment_id"),
        _f("course_id"),
    ),
    "certificate.revoked": (_f("award_id", required=True),),
    "question.answered": (
        _f("attempt_id", required=True),
        _f("user_id", required=True),
        _f("session_id", required=True),
        _f("question_set_id", required=True),
        _f("question_id", required=True),
        _f("question_text"),
        _f("response"),
        _f("score", NUMBER),
        _f("max_score", NUMBER),
        _f("answered_at", TIMESTAMP, required=True),
    ),
}

ENVELOPE_FIELDS = ("event_id", "event_type", "occurred_at", "payload")


@dataclass(frozen=True)
class Entity:
    """A thing events describe, with a typed history table ``state.<name>_history``
    holding every payload field of its event types (see ``certpipeline.state``).

    Its state as of a day is its latest event. ``ended_by`` deletes, removes or
    revokes it; the history then has a flag column ``is_<deleted|removed|revoked>``
    right after the key."""

    name: str
    key: tuple[str, ...]
    event_types: tuple[str, ...]
    ended_by: str | None = None

    @property
    def fields(self) -> tuple[Field, ...]:
        """The payload fields of its event types, in contract order, each once."""
        seen: dict[str, Field] = {}
        for event_type in self.event_types:
            for field in EVENT_TYPES[event_type]:
                seen.setdefault(field.name, field)
        return tuple(seen.values())

    @property
    def ended_flag(self) -> str | None:
        return f"is_{self.ended_by.rsplit('.', 1)[1]}" if self.ended_by else None


ENTITIES: dict[str, Entity] = {
    entity.name: entity
    for entity in (
        Entity("user", ("user_id",), ("user.upserted", "user.deleted"), ended_by="user.deleted"),
        Entity("group", ("group_id",), ("group.upserted",)),
        Entity("group_member", ("group_id", "user_id", "role"), ("group_member.added", "group_member.removed"),
               ended_by="group_member.removed"),
        Entity("course", ("course_id",), ("course.upserted",)),
        Entity("session", ("session_id",), ("session.upserted", "session.deleted"), ended_by="session.deleted"),
        Entity("certificate", ("certificate_id",), ("certificate.upserted",)),
        Entity("enrollment", ("enrollment_id",), ("enrollment.created", "enrollment.deleted"),
               ended_by="enrollment.deleted"),
        # Progress snapshots: a history of their own, joined to the enrollment's state.
        Entity("enrollment_progress", ("enrollment_id",), ("enrollment.progressed",)),
        Entity("award", ("award_id",), ("certificate.issued", "certificate.revoked"), ended_by="certificate.revoked"),
        # Contract section 2: attempt ids are unique only per learner and session (Sunbird).
        Entity("answer", ("user_id", "session_id", "question_set_id", "attempt_id", "question_id"),
               ("question.answered",)),
    )
}
assert {t for entity in ENTITIES.values() for t in entity.event_types} == set(EVENT_TYPES)
