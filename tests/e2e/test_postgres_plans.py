"""The PostgreSQL store's writer plans its statements once per connection
(a generic plan), whatever the size of its batches. Counted with
pg_stat_statements (PostgreSQL's contrib, part of Debian's postgresql-15):
by default PostgreSQL re-plans a statement at every execution when the
plans made with the parameters' values cost less than the generic one,
which batches of fewer than 10 changes always did, and that planning was
most of a quiet cluster's PostgreSQL CPU per commit (writer.c, GENERIC_SQL)."""

import threading

import pytest

from conftest import ServerFactory
from svc_postgres import PostgresServer

API = "/api/workflows"
STATS = ("-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
         " -c pg_stat_statements.track_planning=on")


@pytest.fixture(scope="module")
def pg_counted():
    with PostgresServer(options=STATS) as p:
        p.superuser_sql("CREATE EXTENSION pg_stat_statements")
        yield p


@pytest.fixture
def factory(flowcast, tmp_path):
    f = ServerFactory(flowcast, str(tmp_path))
    yield f
    f.teardown()


def counts(pg, like):
    """(calls, plans) of the statements whose text starts like `like`."""
    out = pg.sql("SELECT coalesce(sum(calls), 0), coalesce(sum(plans), 0)"
                 " FROM pg_stat_statements WHERE query LIKE '%s%%'" % like)
    calls, plans = out.split()[-1].split("|")
    return int(calls), int(plans)


def test_small_batches_reuse_one_plan(pg_counted, factory):
    """Four producers PATCH four workflows at once through one node, so
    its writer commits batches of one to four changes (each of two or more
    plain updates one fc_apply_updates call, after the advisory locks). The
    set-based update and the lock statement are planned once per writer
    connection, not at every batch."""
    srv = factory(db=pg_counted.dsn)
    # A table of a realistic size, where the plans made for small inputs
    # cost less than the generic plan (created in SQL: quicker than POSTs).
    pg_counted.sql("SELECT fc_apply(0, 'filler' || g, 0, 1000, 'f', 'pending', 0, 1, '', 0, 0, '',"
                   " '\\x'::bytea, 0) FROM generate_series(1, 1000) g")
    ids = ["plan%d" % i for i in range(4)]
    for wid in ids:
        r = srv.request("POST", API, body={"id": wid, "name": wid, "total_steps": 1000000})
        assert r.status == 201, r
    pg_counted.superuser_sql("SELECT pg_stat_statements_reset()")
    errors = []

    def produce(wid, n):
        for step in range(1, n + 1):
            r = srv.request("PATCH", API + "/" + wid, body={"current_step": step})
            if r.status != 200:
                errors.append(r)
                return

    sets = locks = 0
    for _ in range(20):  # bounded: until the writer ran enough set-based batches
        ts = [threading.Thread(target=produce, args=(wid, 25)) for wid in ids]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors[:3]
        sets = counts(pg_counted, "WITH inp AS")
        locks = counts(pg_counted, "SELECT pg_advisory_xact_lock")
        if sets[0] >= 20 and locks[0] >= 20:
            break
    assert sets[0] >= 20 and locks[0] >= 20, (sets, locks)
    # One writer connection: one generic plan each (a reconnect would add one).
    assert sets[1] <= 2, "fc_apply_updates' update planned %d times in %d calls" % (sets[1], sets[0])
    assert locks[1] <= 2, "the lock statement planned %d times in %d calls" % (locks[1], locks[0])
