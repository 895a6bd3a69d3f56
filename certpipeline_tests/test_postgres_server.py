"""The PostgreSQL server the catalog and Dagster-instance tests rely on is real."""

import psycopg2


def test_a_fresh_database_on_a_real_server_answers_sql(postgres_database):
    con = psycopg2.connect(postgres_database)
    try:
        cur = con.cursor()
        cur.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1); SELECT sum(x), current_setting('server_version_num')::int >= 150000 FROM t")
        assert cur.fetchone() == (42, True)
    finally:
        con.close()
