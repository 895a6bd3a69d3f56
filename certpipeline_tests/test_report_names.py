"""A report file's name keeps ``<scope>-<request_id>`` whole: only the scope
part is shortened (with a hash of the whole scope), never the request id."""

from __future__ import annotations

import datetime as dt
import re

from certpipeline import request_rules
from certpipeline.state import load_state
from certpipeline_tests.conftest import run_nightly

DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
LONG_BATCH = "b-" + "x" * 298  # a 300-character batch id


def test_a_300_character_scope_keeps_the_request_id_in_the_file_name(landing, warehouse):
    landing.user(DAY, "u-admin", platform_role="admin")
    landing.course(DAY, "c-1")
    landing.session(DAY, LONG_BATCH, "c-1")
    landing.session(DAY, LONG_BATCH + "y", "c-1")
    assert run_nightly(warehouse, DAY).success
    with warehouse.work() as con:
        state = load_state(con, DAY)
    request_id = "req-20261129-101"
    names = []
    for batch in (LONG_BATCH, LONG_BATCH + "y"):
        spec = request_rules.RequestSpec("course_progress_exhaust", "u-admin", batch=batch)
        produced = request_rules.produce(state, warehouse.paths.exhausts, request_id, spec, None)
        names.append(produced.path.name)
        assert produced.path.parent == warehouse.paths.exhausts / "course_progress_exhaust"
        assert produced.path.name.endswith(f"-{request_id}.csv"), produced.path.name
        assert re.fullmatch(r"batch_b-x{60,}_[0-9a-f]{10}-req-20261129-101\.csv", produced.path.name)
        assert len(produced.path.name) <= 255
    # Two long scopes that share their first characters still get two files.
    assert names[0] != names[1]
