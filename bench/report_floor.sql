-- The report floor: the five reports.* tables for one report day D, computed
-- in one DuckDB script straight from typed entity history (the pipeline's
-- state.*_history, or the end-to-end floor's own), written for speed.
-- bench/floor.py fills in the
-- placeholders and runs it; bench/run.py times it against the pipeline's own
-- report step, and certpipeline_tests/test_bench_floor.py checks that both
-- give the same rows.
--
-- Placeholders (plain text substitution, see bench/floor.py):
--   __SCHEMA__  schema the five tables are written to (e.g. bench_floor)
--   __STATE__   schema of the *_history tables read (the pipeline's `state`, or
--               the end-to-end floor's own)
--   __DAY__     DATE literal of the report day D
--   __SOON__    DATE literal of D + 30 days
--   __CUTOFF__  TIMESTAMPTZ literal of D + 1 at 00:00 UTC
--
-- Rules (contract sections 3 and 4, README "Rules the code follows"):
-- * State as of D: per entity key, the latest history row (by occurred_at,
--   landing_date, file, line_number) among rows that occurred before D+1
--   00:00 UTC. For users, sessions and enrollments the latest lifecycle event
--   decides deletion and the latest upsert gives the attributes; for awards the
--   latest issue/revoke decides revocation and the latest issue gives the
--   attributes. Computed with one hash aggregate per entity (max_by over a
--   struct, so NULL attributes of the latest row are kept), not window sorts.
-- * Enrollment deleted = its own latest lifecycle event is a deletion, or its
--   session is deleted.
-- * Counted award: issued before D+1, not revoked, its enrollment (when it
--   names one) not deleted; expiration = delivery date + validity months
--   (clamped to month end), status Expired / Expiring soon / Valid.
-- * Seed-001 tables count active users only (the user's latest lifecycle event
--   is not a deletion); totals and the dashboard count every user.
-- * "Most recent" award = latest issued_at, then award_id.

SET TimeZone = 'UTC';
CREATE SCHEMA IF NOT EXISTS __SCHEMA__;

-- Entity state as of D -------------------------------------------------------

CREATE OR REPLACE TEMP TABLE floor_users AS
SELECT user_id, u.name AS name, u.email AS email, u.is_deleted AS is_deleted
FROM (
    SELECT user_id,
        max_by({'is_deleted': is_deleted, 'name': name, 'email': email},
               (occurred_at, landing_date, file, line_number)) AS u
    FROM __STATE__.user_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY user_id
);

CREATE OR REPLACE TEMP TABLE floor_active_users AS
SELECT user_id, name, email FROM floor_users WHERE NOT is_deleted;

CREATE OR REPLACE TEMP TABLE floor_groups AS
SELECT group_id, max_by({'name': name}, (occurred_at, landing_date, file, line_number)).name AS name
FROM __STATE__.group_history
WHERE occurred_at < __CUTOFF__
GROUP BY group_id;

CREATE OR REPLACE TEMP TABLE floor_courses AS
SELECT course_id, max_by({'name': name}, (occurred_at, landing_date, file, line_number)).name AS name
FROM __STATE__.course_history
WHERE occurred_at < __CUTOFF__
GROUP BY course_id;

CREATE OR REPLACE TEMP TABLE floor_certificates AS
SELECT certificate_id, c.title AS title, c.certificate_type AS certificate_type,
    c.owner_group_id AS owner_group_id, c.validity_months AS validity_months
FROM (
    SELECT certificate_id,
        max_by({'title': title, 'certificate_type': certificate_type, 'owner_group_id': owner_group_id,
                'validity_months': validity_months},
               (occurred_at, landing_date, file, line_number)) AS c
    FROM __STATE__.certificate_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY certificate_id
);

CREATE OR REPLACE TEMP TABLE floor_sessions AS
SELECT session_id, is_deleted, a.course_id AS course_id, a.name AS name, a.start_date AS start_date,
    a.end_date AS end_date, a.status AS status, a.certificate_id AS certificate_id
FROM (
    SELECT session_id,
        max_by(is_deleted, (occurred_at, landing_date, file, line_number)) AS is_deleted,
        max_by({'course_id': course_id, 'name': name, 'start_date': start_date, 'end_date': end_date,
                'status': status, 'certificate_id': certificate_id},
               (occurred_at, landing_date, file, line_number)) FILTER (WHERE NOT is_deleted) AS a
    FROM __STATE__.session_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY session_id
);

CREATE OR REPLACE TEMP TABLE floor_enrollments AS
WITH enrollment AS (
    SELECT enrollment_id,
        max_by(is_deleted, (occurred_at, landing_date, file, line_number)) AS own_deleted,
        max_by({'user_id': user_id, 'session_id': session_id, 'enrolled_at': enrolled_at,
                'auto_reenrolled': auto_reenrolled},
               (occurred_at, landing_date, file, line_number)) FILTER (WHERE NOT is_deleted) AS a
    FROM __STATE__.enrollment_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY enrollment_id
), progress AS (
    SELECT enrollment_id,
        max_by({'status': status}, (occurred_at, landing_date, file, line_number)).status AS progress_status
    FROM __STATE__.enrollment_progress_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY enrollment_id
)
SELECT enrollment_id, a.user_id AS user_id, a.session_id AS session_id, a.enrolled_at AS enrolled_at,
    a.auto_reenrolled AS auto_reenrolled,
    own_deleted OR a.session_id IN (SELECT session_id FROM floor_sessions WHERE is_deleted) AS is_deleted,
    progress.progress_status
FROM enrollment LEFT JOIN progress USING (enrollment_id);

CREATE OR REPLACE TEMP TABLE floor_counted_awards AS
WITH award AS (
    SELECT award_id,
        max_by(is_revoked, (occurred_at, landing_date, file, line_number)) AS is_revoked,
        max_by({'user_id': user_id, 'certificate_id': certificate_id, 'issued_at': issued_at,
                'enrollment_id': enrollment_id, 'course_id': course_id},
               (occurred_at, landing_date, file, line_number)) FILTER (WHERE NOT is_revoked) AS a
    FROM __STATE__.award_history
    WHERE occurred_at < __CUTOFF__
    GROUP BY award_id
), counted AS (
    SELECT award_id, a.user_id AS user_id, a.certificate_id AS certificate_id, a.issued_at AS issued_at,
        a.enrollment_id AS enrollment_id, a.course_id AS course_id
    FROM award
    WHERE NOT is_revoked AND a.issued_at < __CUTOFF__
      AND NOT coalesce(a.enrollment_id IN (SELECT enrollment_id FROM floor_enrollments WHERE is_deleted), false)
), dated AS (
    SELECT counted.*, c.certificate_type,
        CAST(issued_at AS DATE) AS delivery_date,
        CASE WHEN c.validity_months IS NOT NULL
             THEN CAST(CAST(issued_at AS DATE) + to_months(c.validity_months) AS DATE) END AS expiration_date
    FROM counted LEFT JOIN floor_certificates c USING (certificate_id)
)
SELECT *,
    CASE WHEN expiration_date <= __DAY__ THEN 'Expired'
         WHEN expiration_date <= __SOON__ THEN 'Expiring soon'
         ELSE 'Valid' END AS status
FROM dated;

-- Non-deleted enrollments of active users in non-deleted sessions granting a
-- certificate: the rows of the seed-001 tables.
CREATE OR REPLACE TEMP TABLE floor_certificate_enrollments AS
SELECT e.enrollment_id, e.user_id, e.enrolled_at, e.auto_reenrolled, e.progress_status,
    s.certificate_id, s.course_id, s.name AS session_name, s.status AS session_status
FROM floor_enrollments e
JOIN floor_sessions s ON s.session_id = e.session_id
WHERE NOT e.is_deleted AND NOT s.is_deleted AND s.certificate_id IS NOT NULL
  AND e.user_id IN (SELECT user_id FROM floor_active_users);

-- The five report tables -------------------------------------------------------

CREATE OR REPLACE TABLE __SCHEMA__.certificate_type_totals AS
SELECT coalesce(a.course_id, s.course_id) AS course_id, a.certificate_type,
    CAST(count(*) AS BIGINT) AS total_certificates_issued, __DAY__ AS report_date
FROM floor_counted_awards a
LEFT JOIN floor_enrollments e ON e.enrollment_id = a.enrollment_id
LEFT JOIN floor_sessions s ON s.session_id = e.session_id
WHERE coalesce(a.course_id, s.course_id) IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TABLE __SCHEMA__.path_certificate_stats AS
WITH certified AS (
    SELECT certificate_id, count(DISTINCT user_id) AS n
    FROM floor_counted_awards
    WHERE user_id IN (SELECT user_id FROM floor_active_users)
    GROUP BY certificate_id
), enrolled AS (
    SELECT certificate_id, count(DISTINCT user_id) AS n
    FROM floor_certificate_enrollments
    WHERE session_status IS DISTINCT FROM 'archived'
    GROUP BY certificate_id
), associated AS (
    -- a session with no course counts as one more course, as Polars' n_unique does
    SELECT certificate_id, count(DISTINCT course_id) + max(CASE WHEN course_id IS NULL THEN 1 ELSE 0 END) AS n
    FROM floor_sessions
    WHERE NOT is_deleted AND certificate_id IS NOT NULL
    GROUP BY certificate_id
)
SELECT c.certificate_id, c.title, g.name AS owner_group, c.validity_months AS validity_period_months,
    CAST(coalesce(certified.n, 0) AS BIGINT) AS certified_learners,
    CAST(coalesce(enrolled.n, 0) AS BIGINT) AS enrolled_learners,
    CAST(coalesce(associated.n, 0) AS BIGINT) AS associated_paths,
    __DAY__ AS report_date
FROM floor_certificates c
LEFT JOIN floor_groups g ON g.group_id = c.owner_group_id
LEFT JOIN certified ON certified.certificate_id = c.certificate_id
LEFT JOIN enrolled ON enrolled.certificate_id = c.certificate_id
LEFT JOIN associated ON associated.certificate_id = c.certificate_id
WHERE c.certificate_id IN (SELECT certificate_id FROM floor_certificate_enrollments);

CREATE OR REPLACE TABLE __SCHEMA__.path_certificate_learners AS
WITH learners AS (
    SELECT DISTINCT certificate_id, user_id FROM floor_certificate_enrollments
), latest AS (
    SELECT certificate_id, user_id,
        max_by({'status': status, 'delivery_date': delivery_date, 'expiration_date': expiration_date},
               (issued_at, award_id)) AS r
    FROM floor_counted_awards
    GROUP BY certificate_id, user_id
)
SELECT l.certificate_id, l.user_id, u.name AS learner_name, u.email AS learner_email,
    coalesce(latest.r.status, 'Not obtained') AS latest_status,
    latest.r.delivery_date AS delivery_date, latest.r.expiration_date AS expiration_date,
    __DAY__ AS report_date
FROM learners l
LEFT JOIN floor_active_users u ON u.user_id = l.user_id
LEFT JOIN latest ON latest.certificate_id = l.certificate_id AND latest.user_id = l.user_id;

CREATE OR REPLACE TABLE __SCHEMA__.learner_certificate_history AS
WITH latest AS (
    SELECT certificate_id, enrollment_id,
        max_by({'status': status, 'delivery_date': delivery_date, 'expiration_date': expiration_date},
               (issued_at, award_id)) AS r
    FROM floor_counted_awards
    WHERE enrollment_id IS NOT NULL
    GROUP BY certificate_id, enrollment_id
)
SELECT ce.certificate_id, ce.user_id, ce.enrollment_id,
    coalesce(latest.r.status, 'Not obtained') AS certification_status,
    latest.r.delivery_date AS delivery_date, latest.r.expiration_date AS expiration_date,
    co.name AS path_name, ce.session_name AS path_session,
    coalesce(ce.progress_status, 'not_started') AS path_status,
    ce.auto_reenrolled AS auto_reenrollment,
    __DAY__ AS report_date
FROM floor_certificate_enrollments ce
LEFT JOIN floor_courses co ON co.course_id = ce.course_id
LEFT JOIN latest ON latest.certificate_id = ce.certificate_id AND latest.enrollment_id = ce.enrollment_id;

CREATE OR REPLACE TABLE __SCHEMA__.course_batch_dashboard AS
WITH totals AS (
    SELECT session_id, count(*) AS n FROM floor_enrollments WHERE NOT is_deleted GROUP BY session_id
)
SELECT s.course_id, s.session_id AS batch_id, s.name AS batch_name, s.start_date, s.end_date,
    CASE WHEN s.end_date < __DAY__ THEN 'Expired' ELSE 'Live' END AS batch_status,
    CAST(coalesce(totals.n, 0) AS BIGINT) AS total_enrollment,
    __DAY__ AS report_date
FROM floor_sessions s
LEFT JOIN totals ON totals.session_id = s.session_id
WHERE NOT s.is_deleted;

DROP TABLE floor_users;
DROP TABLE floor_active_users;
DROP TABLE floor_groups;
DROP TABLE floor_courses;
DROP TABLE floor_certificates;
DROP TABLE floor_sessions;
DROP TABLE floor_enrollments;
DROP TABLE floor_counted_awards;
DROP TABLE floor_certificate_enrollments;
