/* PostgreSQL store: the ordered schema migrations, run by whichever node
 * starts first while the others wait on an advisory lock. */
#include "store/postgres/pg_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key of the migrations: "flowcast" in ASCII. */
#define FC__PG_MIGRATE_LOCK "7380998101891359092"

/* A node waits this long for another node's migration before giving up. */
#define FC__PG_MIGRATE_MS 60000

/* The schema, as an ordered list of steps; step i (0-based) brings the
 * database to version i + 1, each in its own transaction. Never edit a
 * released step: append a new one.
 *
 * Step 1. A workflow row holds the current state (one row lookup per
 * change instead of SQLite's newest-event join). events is the
 * per-workflow log (retention), tombstones the last deletion of an id with
 * the deleted state, idempotency_keys as in the SQLite backend. Event and
 * tombstone rows record `xid`, the 64-bit id of the transaction that wrote
 * them: the commit-ordered log (log.c) reads changes by it. Not the
 * workflow row: an indexed column changing at every update would keep any
 * update from being HOT and write an entry in every index of the table;
 * the workflow row holds only what a change rewrites (no indexed column
 * but the status), and fillfactor 80 leaves room for HOT updates.
 *
 * fc_apply applies one change inside the caller's transaction and answers
 * with its outcome as a row: refusals (not_found, exists, seq_mismatch,
 * terminal, invalid, key_reused) are results, not errors, so one refused
 * change of a batch leaves the transaction valid for the others. The row
 * lock (SELECT ... FOR UPDATE) makes seq assignment and if_seq atomic
 * across nodes; INSERT ... ON CONFLICT DO NOTHING makes one of two
 * concurrent creates (and one of two uses of an idempotency key) win, the
 * other waiting for it and then seeing its row. A key is claimed first
 * with a 'pending' row and given its outcome at the end; every path of the
 * function that claims it records an outcome, and a failure of the
 * transaction removes the claim with everything else. */
/* The set-based update of fc_apply_updates (step 1) and fc_apply_set (step
 * 3), as the WITH items upd and ev over an item inp (id, fields, status,
 * step, total, message, if_seq, n): it applies the inputs that pass every
 * check and logs their events; upd returns `returning`. One text for both
 * steps (step 1's is unchanged, byte for byte). */
#define SET_UPDATE(returning)                                                                      \
    "  upd AS (UPDATE workflows w SET"                                                             \
    "    status = CASE WHEN (inp.fields & 1) <> 0 THEN inp.status ELSE w.status END,"              \
    "    current_step = CASE WHEN (inp.fields & 2) <> 0 THEN inp.step ELSE w.current_step END,"    \
    "    total_steps = CASE WHEN (inp.fields & 4) <> 0 THEN inp.total ELSE w.total_steps END,"     \
    "    message = CASE WHEN (inp.fields & 8) <> 0 THEN inp.message ELSE w.message END,"           \
    "    seq = w.seq + 1, updated_at = p_now"                                                      \
    "    FROM inp WHERE w.id = inp.id AND w.status NOT IN ('completed', 'failed', 'cancelled')"    \
    "    AND ((inp.fields & 16) = 0 OR inp.if_seq = w.seq)"                                        \
    "    AND CASE WHEN (inp.fields & 2) <> 0 THEN inp.step ELSE w.current_step END"                \
    "      <= CASE WHEN (inp.fields & 4) <> 0 THEN inp.total ELSE w.total_steps END"               \
    "    RETURNING " returning "),\n"                                                             \
    "  ev AS (INSERT INTO events SELECT id, seq, status, current_step, total_steps, message,"      \
    "    p_now, me FROM upd),\n"

static const char *const migrations[] = {
    "CREATE TABLE workflows ("
    "  pk BIGSERIAL PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step BIGINT NOT NULL,"
    "  total_steps BIGINT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  epoch BIGINT NOT NULL) WITH (fillfactor = 80);"
    "CREATE INDEX workflows_status ON workflows (status, pk);"
    "CREATE TABLE events ("
    "  workflow_id TEXT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step BIGINT NOT NULL,"
    "  total_steps BIGINT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  ts BIGINT NOT NULL,"
    "  xid BIGINT NOT NULL,"
    "  PRIMARY KEY (workflow_id, seq));"
    "CREATE INDEX events_xid ON events (xid);"
    "CREATE TABLE tombstones ("
    "  id TEXT PRIMARY KEY,"
    "  epoch BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  deleted_at BIGINT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step BIGINT NOT NULL,"
    "  total_steps BIGINT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  xid BIGINT NOT NULL);"
    "CREATE INDEX tombstones_xid ON tombstones (xid);"
    "CREATE TABLE idempotency_keys ("
    "  key TEXT PRIMARY KEY,"
    "  fingerprint BYTEA NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  result TEXT NOT NULL,"
    "  errmsg TEXT NOT NULL,"
    "  workflow_id TEXT NOT NULL,"
    "  epoch BIGINT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step BIGINT NOT NULL,"
    "  total_steps BIGINT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  seq BIGINT NOT NULL,"
    "  wf_created_at BIGINT NOT NULL,"
    "  wf_updated_at BIGINT NOT NULL);"
    "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);"
    /* p_kind: 0 create, 1 update, 2 delete. p_fields: the FC_PATCH_* bits. */
    "CREATE FUNCTION fc_apply(p_kind int, p_id text, p_now bigint, p_retention int,"
    "  p_name text, p_status text, p_step bigint, p_total bigint, p_message text,"
    "  p_fields int, p_if_seq bigint, p_key text, p_fp bytea, p_window bigint,"
    "  OUT r_result text, OUT r_errmsg text, OUT r_replayed boolean, OUT r_id text,"
    "  OUT r_name text, OUT r_status text, OUT r_step bigint, OUT r_total bigint,"
    "  OUT r_message text, OUT r_seq bigint, OUT r_created bigint, OUT r_updated bigint,"
    "  OUT r_epoch bigint)"
    " LANGUAGE plpgsql AS $fc$\n"
    "DECLARE\n"
    "  w workflows%ROWTYPE;\n"
    "  k idempotency_keys%ROWTYPE;\n"
    "  dead bigint;\n"
    "  me bigint := pg_current_xact_id()::text::bigint;\n"
    "  step bigint; total bigint;\n"
    "BEGIN\n"
    "  r_result := 'ok'; r_errmsg := ''; r_replayed := false; r_id := p_id;\n"
    "  IF p_key <> '' THEN\n"
    "    INSERT INTO idempotency_keys VALUES (p_key, p_fp, p_now, 'pending', '', p_id, 0, '',"
    "      'pending', 0, 0, '', 0, 0, 0) ON CONFLICT (key) DO NOTHING;\n"
    "    IF NOT FOUND THEN\n"
    "      SELECT * INTO k FROM idempotency_keys WHERE key = p_key FOR UPDATE;\n"
    "      IF p_now - k.created_at >= p_window THEN\n"
    "        UPDATE idempotency_keys SET fingerprint = p_fp, created_at = p_now,"
    "          result = 'pending' WHERE key = p_key;\n"
    "      ELSIF k.fingerprint <> p_fp THEN\n"
    "        r_result := 'key_reused';\n"
    "        r_errmsg := 'idempotency key already used for a different request';\n"
    "        RETURN;\n"
    "      ELSE\n"
    "        r_replayed := true; r_result := k.result; r_errmsg := k.errmsg;\n"
    "        r_id := k.workflow_id; r_name := k.name; r_status := k.status;\n"
    "        r_step := k.current_step; r_total := k.total_steps; r_message := k.message;\n"
    "        r_seq := k.seq; r_created := k.wf_created_at; r_updated := k.wf_updated_at;\n"
    "        r_epoch := k.epoch;\n"
    "        RETURN;\n"
    "      END IF;\n"
    "    END IF;\n"
    "  END IF;\n"
    "  IF p_kind = 0 THEN\n"
    "    r_name := p_name; r_status := p_status; r_step := p_step; r_total := p_total;\n"
    "    r_message := p_message; r_seq := 0; r_created := 0; r_updated := 0; r_epoch := 0;\n"
    "    IF p_step > p_total THEN\n"
    "      r_result := 'invalid';\n"
    "      r_errmsg := format('current_step (%s) is greater than total_steps (%s)', p_step,"
    "        p_total);\n"
    "    ELSE\n"
    "      SELECT epoch INTO dead FROM tombstones WHERE id = p_id;\n"
    /* An epoch in [1, 2^53-1], never the deleted incarnation's. */
    "      LOOP\n"
    "        r_epoch := 1 + floor(random() * 9007199254740990)::bigint;\n"
    "        EXIT WHEN dead IS NULL OR r_epoch <> dead;\n"
    "      END LOOP;\n"
    "      INSERT INTO workflows (id, name, status, current_step, total_steps, message, seq,"
    "        created_at, updated_at, epoch) VALUES (p_id, p_name, p_status, p_step, p_total,"
    "        p_message, 1, p_now, p_now, r_epoch) ON CONFLICT (id) DO NOTHING;\n"
    "      IF NOT FOUND THEN\n"
    "        r_result := 'exists';\n"
    "        r_errmsg := format('workflow ''%s'' already exists', p_id);\n"
    "      ELSE\n"
    "        INSERT INTO events VALUES (p_id, 1, p_status, p_step, p_total, p_message, p_now,"
    "          me);\n"
    "        r_seq := 1; r_created := p_now; r_updated := p_now;\n"
    "      END IF;\n"
    "    END IF;\n"
    "  ELSE\n"
    "    SELECT * INTO w FROM workflows WHERE id = p_id FOR UPDATE;\n"
    "    IF NOT FOUND THEN\n"
    "      r_result := 'not_found';\n"
    "      r_errmsg := format('workflow ''%s'' not found', p_id);\n"
    "      r_name := ''; r_status := 'pending'; r_step := 0; r_total := 0; r_message := '';\n"
    "      r_seq := 0; r_created := 0; r_updated := 0; r_epoch := 0;\n"
    "    ELSE\n"
    "      r_name := w.name; r_status := w.status; r_step := w.current_step;\n"
    "      r_total := w.total_steps; r_message := w.message; r_seq := w.seq;\n"
    "      r_created := w.created_at; r_updated := w.updated_at; r_epoch := w.epoch;\n"
    "      IF p_kind = 2 THEN\n"
    "        DELETE FROM workflows WHERE pk = w.pk;\n"
    "        DELETE FROM events WHERE workflow_id = p_id;\n"
    "        INSERT INTO tombstones VALUES (p_id, w.epoch, w.seq + 1, p_now, w.name, w.status,"
    "          w.current_step, w.total_steps, w.message, w.created_at, w.updated_at, me)"
    "          ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch, seq = EXCLUDED.seq,"
    "          deleted_at = EXCLUDED.deleted_at, name = EXCLUDED.name, status = EXCLUDED.status,"
    "          current_step = EXCLUDED.current_step, total_steps = EXCLUDED.total_steps,"
    "          message = EXCLUDED.message, created_at = EXCLUDED.created_at,"
    "          updated_at = EXCLUDED.updated_at, xid = EXCLUDED.xid;\n"
    "      ELSIF (p_fields & 16) <> 0 AND p_if_seq <> w.seq THEN\n"
    "        r_result := 'seq_mismatch';\n"
    "        r_errmsg := format('seq mismatch: if_seq is %s but workflow ''%s'' is at seq %s',"
    "          p_if_seq, p_id, w.seq);\n"
    "      ELSIF w.status IN ('completed', 'failed', 'cancelled') THEN\n"
    "        r_result := 'terminal';\n"
    "        r_errmsg := format('workflow ''%s'' is %s and can no longer change', p_id,"
    "          w.status);\n"
    "      ELSE\n"
    "        step := CASE WHEN (p_fields & 2) <> 0 THEN p_step ELSE w.current_step END;\n"
    "        total := CASE WHEN (p_fields & 4) <> 0 THEN p_total ELSE w.total_steps END;\n"
    "        IF step > total THEN\n"
    "          r_result := 'invalid';\n"
    "          r_errmsg := format('current_step (%s) is greater than total_steps (%s)', step,"
    "            total);\n"
    "        ELSE\n"
    "          r_step := step; r_total := total; r_seq := w.seq + 1; r_updated := p_now;\n"
    "          IF (p_fields & 1) <> 0 THEN r_status := p_status; END IF;\n"
    "          IF (p_fields & 8) <> 0 THEN r_message := p_message; END IF;\n"
    "          UPDATE workflows SET status = r_status, current_step = step, total_steps = total,"
    "            message = r_message, seq = r_seq, updated_at = p_now WHERE pk = w.pk;\n"
    "          INSERT INTO events VALUES (p_id, r_seq, r_status, step, total, r_message, p_now,"
    "            me);\n"
    /* Trimmed in steps (FC__PG_TRIM_EVERY = 64); readers skip the extra rows. */
    "          IF r_seq % 64 = 0 AND r_seq - p_retention >= 1 THEN\n"
    "            DELETE FROM events WHERE workflow_id = p_id AND seq <= r_seq - p_retention;\n"
    "          END IF;\n"
    "        END IF;\n"
    "      END IF;\n"
    "    END IF;\n"
    "  END IF;\n"
    "  IF p_key <> '' THEN\n"
    "    UPDATE idempotency_keys SET result = r_result, errmsg = r_errmsg,"
    "      workflow_id = r_id, epoch = r_epoch, name = r_name, status = r_status,"
    "      current_step = r_step, total_steps = r_total, message = r_message, seq = r_seq,"
    "      wf_created_at = r_created, wf_updated_at = r_updated WHERE key = p_key;\n"
    "  END IF;\n"
    "END\n"
    "$fc$;"
    /* fc_apply_updates: the plain updates of a batch (no idempotency key)
     * in one set-based statement: fc_apply per change cost ~80-100 us of
     * PostgreSQL CPU (PL/pgSQL statements, a SELECT ... FOR UPDATE then an
     * UPDATE and an INSERT each planned and run one row at a time); one
     * UPDATE ... FROM unnest(...) RETURNING feeding the INSERT of the
     * events costs a fraction (docs/architecture.md, PostgreSQL store).
     * The UPDATE applies the changes that pass every check (the row
     * exists, if_seq matches, not terminal, step <= total) and takes its
     * row locks in its plan's order (a scan of the table or of the input;
     * the writer's advisory locks keep two batches from a cycle, writer.c
     * LOCK_SQL; an input must not hold an id twice); a row another
     * transaction changes meanwhile is re-checked on its new version (READ
     * COMMITTED's EvalPlanQual). Every input it did not apply goes through
     * fc_apply, which locks the row at a fresh snapshot and answers the
     * exact refusal (or applies it, when the row changed in between). One
     * outcome row per input, r_index its 1-based index.
     * The join of the input with workflows is a nested loop probing the id
     * index, never a hash or merge join: the plan is cached (generic, the
     * input estimated at 10 rows whatever its size), and against a table
     * of 1,000 workflows the planner chose a hash join over a scan of the
     * whole table, at every batch: about 450 us of PostgreSQL CPU per
     * batch of 10 or 21 changes (pgbench), 126 against 112 us per change
     * with three nodes (docs/cluster.md, Capacity), and a cost that grows
     * with the table. With batches of 64 on 1,000 rows both cost the same. */
    "CREATE TYPE fc_outcome AS (r_index int, r_result text, r_errmsg text,"
    "  r_replayed boolean, r_id text, r_name text, r_status text, r_step bigint,"
    "  r_total bigint, r_message text, r_seq bigint, r_created bigint, r_updated bigint,"
    "  r_epoch bigint);"
    "CREATE FUNCTION fc_apply_updates(p_ids text[], p_fields int[], p_status text[],"
    "  p_step bigint[], p_total bigint[], p_message text[], p_if_seq bigint[], p_now bigint,"
    "  p_retention int) RETURNS SETOF fc_outcome LANGUAGE plpgsql"
    "  SET enable_hashjoin = off SET enable_mergejoin = off AS $fc$\n"
    "DECLARE\n"
    "  me bigint := pg_current_xact_id()::text::bigint;\n"
    "  done fc_outcome[];\n"
    "BEGIN\n"
    "  WITH inp AS (SELECT * FROM unnest(p_ids, p_fields, p_status, p_step, p_total,"
    "    p_message, p_if_seq) WITH ORDINALITY AS i(id, fields, status, step, total, message,"
    "    if_seq, n)),\n"
    SET_UPDATE("inp.n, w.*")
    /* Trimmed in steps (FC__PG_TRIM_EVERY = 64), as fc_apply does. */
    "  tr AS (DELETE FROM events e USING upd WHERE upd.seq % 64 = 0"
    "    AND upd.seq - p_retention >= 1 AND e.workflow_id = upd.id"
    "    AND e.seq <= upd.seq - p_retention)\n"
    "  SELECT array_agg(ROW(n, 'ok', '', false, id, name, status, current_step, total_steps,"
    "    message, seq, created_at, updated_at, epoch)::fc_outcome) INTO done FROM upd;\n"
    "  RETURN QUERY SELECT * FROM unnest(done);\n"
    /* Only when an input is left: starting the query costs about 50 us of
     * a batch whose every change applied (pgbench, batches of 10). */
    "  IF coalesce(cardinality(done), 0) < cardinality(p_ids) THEN\n"
    "    RETURN QUERY SELECT k::int, f.* FROM generate_subscripts(p_ids, 1) k,"
    "      LATERAL fc_apply(1, p_ids[k], p_now, p_retention, '', p_status[k], p_step[k],"
    "      p_total[k], p_message[k], p_fields[k], p_if_seq[k], '', '\\x'::bytea, 0) f"
    "      WHERE k NOT IN (SELECT r_index FROM unnest(done));\n"
    "  END IF;\n"
    "END\n"
    "$fc$;",

    /* Step 2. commits: a row per transaction that wrote the log (events or
     * tombstones), by its xid, so the cluster's catch-up can ask which
     * transactions committed in a window (one row per batch of up to
     * FC__PG_BATCH_MAX changes) and fetch the rows of only those the bus
     * did not bring (log.c). Written by statement triggers rather than by
     * the writer, so that every writer of the log writes it, a node of an
     * older version too during a rolling upgrade: a transaction missing
     * from it would be skipped. ON CONFLICT DO NOTHING: one row for a
     * transaction's many statements (an index probe each after the first).
     * at: when the row was written, for the trim (writer.c, rows older than
     * FC__PG_COMMITS_KEEP_S); clock_timestamp, not the transaction's start,
     * which a long transaction would put in the past. */
    "CREATE TABLE commits (xid BIGINT PRIMARY KEY, at TIMESTAMPTZ NOT NULL);"
    "CREATE INDEX commits_at ON commits (at);"
    "CREATE FUNCTION fc_note_commit() RETURNS trigger LANGUAGE plpgsql AS $fc$\n"
    "BEGIN\n"
    "  INSERT INTO commits VALUES (pg_current_xact_id()::text::bigint, clock_timestamp())"
    "    ON CONFLICT (xid) DO NOTHING;\n"
    "  RETURN NULL;\n"
    "END\n"
    "$fc$;"
    "CREATE TRIGGER events_commit AFTER INSERT ON events"
    "  FOR EACH STATEMENT EXECUTE FUNCTION fc_note_commit();"
    "CREATE TRIGGER tombstones_commit AFTER INSERT OR UPDATE ON tombstones"
    "  FOR EACH STATEMENT EXECUTE FUNCTION fc_note_commit();",

    /* Step 3. Updates with an idempotency key join the set. Every
     * official client sends a key with every change, so without this each
     * of their changes was one fc_apply call: about 180 us of PostgreSQL CPU per change against
     * about 30-50 in a set (pgbench, docs/cluster.md, Capacity).
     * fc_apply_set is fc_apply_updates plus p_keys (''  for none) and
     * p_fps. It first claims, in one INSERT, every key no row holds yet
     * (waiting, as fc_apply does, for a transaction that holds it
     * uncommitted); a key it did not claim (a replay, a reuse, an expired
     * key) leaves its change to fc_apply with the key, which answers it
     * exactly as before. A claimed key's change joins the set update, and
     * the key is given its outcome in the same statement; one the update
     * did not apply goes through fc_apply without the key, and the key
     * then gets that outcome: what fc_apply records for a key it claims.
     * The writer never puts one key twice in a set (writer.c, plan_batch:
     * a key an earlier change carries comes last, alone). */
    "CREATE FUNCTION fc_apply_set(p_ids text[], p_fields int[], p_status text[],"
    "  p_step bigint[], p_total bigint[], p_message text[], p_if_seq bigint[], p_keys text[],"
    "  p_fps bytea[], p_now bigint, p_retention int, p_window bigint)"
    "  RETURNS SETOF fc_outcome LANGUAGE plpgsql"
    "  SET enable_hashjoin = off SET enable_mergejoin = off AS $fc$\n"
    "DECLARE\n"
    "  me bigint := pg_current_xact_id()::text::bigint;\n"
    "  claimed text[] := '{}';\n"
    "  done fc_outcome[];\n"
    "  o fc_outcome;\n"
    "  k int;\n"
    "BEGIN\n"
    "  IF EXISTS (SELECT FROM unnest(p_keys) x WHERE x <> '') THEN\n"
    "    WITH c AS (INSERT INTO idempotency_keys SELECT key, fp, p_now, 'pending', '', id, 0,"
    "      '', 'pending', 0, 0, '', 0, 0, 0 FROM unnest(p_keys, p_fps, p_ids) AS i(key, fp, id)"
    "      WHERE key <> '' ORDER BY key ON CONFLICT (key) DO NOTHING RETURNING key)\n"
    "    SELECT coalesce(array_agg(key), '{}') INTO claimed FROM c;\n"
    "  END IF;\n"
    "  WITH inp AS (SELECT * FROM unnest(p_ids, p_fields, p_status, p_step, p_total,"
    "    p_message, p_if_seq, p_keys) WITH ORDINALITY AS i(id, fields, status, step, total,"
    "    message, if_seq, key, n) WHERE key = '' OR key = ANY(claimed)),\n"
    SET_UPDATE("inp.n, inp.key, w.*")
    /* Trimmed in steps (FC__PG_TRIM_EVERY = 64), as fc_apply does. */
    "  tr AS (DELETE FROM events e USING upd WHERE upd.seq % 64 = 0"
    "    AND upd.seq - p_retention >= 1 AND e.workflow_id = upd.id"
    "    AND e.seq <= upd.seq - p_retention),\n"
    "  ko AS (UPDATE idempotency_keys ik SET result = 'ok', errmsg = '', workflow_id = upd.id,"
    "    epoch = upd.epoch, name = upd.name, status = upd.status,"
    "    current_step = upd.current_step, total_steps = upd.total_steps,"
    "    message = upd.message, seq = upd.seq, wf_created_at = upd.created_at,"
    "    wf_updated_at = upd.updated_at FROM upd WHERE upd.key <> '' AND ik.key = upd.key)\n"
    "  SELECT array_agg(ROW(n, 'ok', '', false, id, name, status, current_step, total_steps,"
    "    message, seq, created_at, updated_at, epoch)::fc_outcome) INTO done FROM upd;\n"
    "  RETURN QUERY SELECT * FROM unnest(done);\n"
    "  IF coalesce(cardinality(done), 0) = cardinality(p_ids) THEN RETURN; END IF;\n"
    "  FOR k IN SELECT g FROM generate_subscripts(p_ids, 1) g"
    "    WHERE g NOT IN (SELECT r_index FROM unnest(done)) ORDER BY g LOOP\n"
    "    IF p_keys[k] <> '' AND p_keys[k] = ANY(claimed) THEN\n"
    "      SELECT k, f.* INTO o FROM fc_apply(1, p_ids[k], p_now, p_retention, '', p_status[k],"
    "        p_step[k], p_total[k], p_message[k], p_fields[k], p_if_seq[k], '', '\\x'::bytea,"
    "        0) f;\n"
    "      UPDATE idempotency_keys SET result = o.r_result, errmsg = o.r_errmsg,"
    "        workflow_id = o.r_id, epoch = o.r_epoch, name = o.r_name, status = o.r_status,"
    "        current_step = o.r_step, total_steps = o.r_total, message = o.r_message,"
    "        seq = o.r_seq, wf_created_at = o.r_created, wf_updated_at = o.r_updated"
    "        WHERE key = p_keys[k];\n"
    "    ELSE\n"
    "      SELECT k, f.* INTO o FROM fc_apply(1, p_ids[k], p_now, p_retention, '', p_status[k],"
    "        p_step[k], p_total[k], p_message[k], p_fields[k], p_if_seq[k], p_keys[k], p_fps[k],"
    "        p_window) f;\n"
    "    END IF;\n"
    "    RETURN NEXT o;\n"
    "  END LOOP;\n"
    "END\n"
    "$fc$;",
};

_Static_assert(FC__PG_TRIM_EVERY == 64, "fc_apply trims every 64 changes");

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof *migrations))

int fc__pg_schema_latest(void)
{
    return N_MIGRATIONS;
}

/* Runs sql (no parameters) and returns 0, or FC_EIO with what: reason in err. */
static int run(PGconn *c, const char *sql, const char *what, char *err, size_t errlen)
{
    char why[200];
    int broken;
    PGresult *r = fc__pg_exec(c, NULL, sql, 0, NULL, FC__PG_MIGRATE_MS, &broken, why, sizeof why);
    if (!r) {
        /* In two steps: a reason longer than err is cut, which is fine. */
        int n = snprintf(err, errlen, "%s: ", what);
        if (n > 0 && (size_t)n < errlen) {
            size_t len = strnlen(why, errlen - (size_t)n - 1);
            memcpy(err + n, why, len);
            err[(size_t)n + len] = '\0';
        }
        return FC_EIO;
    }
    PQclear(r);
    return 0;
}

static int read_version(PGconn *c, int *v, char *err, size_t errlen)
{
    char why[200];
    int broken;
    PGresult *r =
        fc__pg_exec(c, NULL, "SELECT COALESCE(MAX(version), 0) FROM schema_version", 0, NULL,
                    FC__PG_MIGRATE_MS, &broken, why, sizeof why);
    if (!r || PQntuples(r) != 1) {
        snprintf(err, errlen, "cannot read schema_version: %s", r ? "no row" : why);
        PQclear(r);
        return FC_EIO;
    }
    *v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* Everything after the lock is taken; the caller releases it. */
static int migrate_locked(PGconn *c, int *version, char *err, size_t errlen)
{
    int cur;
    if (run(c,
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "  version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
            "cannot create schema_version", err, errlen) != 0 ||
        read_version(c, &cur, err, errlen) != 0)
        return FC_EIO;
    if (cur > N_MIGRATIONS) {
        snprintf(err, errlen, "database schema version %d is newer than this server's (%d)", cur,
                 N_MIGRATIONS);
        return FC_EIO;
    }
    for (int step = cur + 1; step <= N_MIGRATIONS; step++) {
        char rec[96];
        snprintf(rec, sizeof rec, "INSERT INTO schema_version VALUES (%d, %lld)", step,
                 (long long)fc_time_now_ms());
        if (run(c, "BEGIN", "cannot start migration", err, errlen) != 0) return FC_EIO;
        if (run(c, migrations[step - 1], "migration failed", err, errlen) != 0 ||
            run(c, rec, "cannot record migration", err, errlen) != 0 ||
            run(c, "COMMIT", "cannot commit migration", err, errlen) != 0) {
            char ignore[256];
            run(c, "ROLLBACK", "rollback", ignore, sizeof ignore);
            return FC_EIO;
        }
        FC_INFO(FC__PG_TAG, "schema migrated to version %d", step);
    }
    *version = N_MIGRATIONS;
    return 0;
}

int fc__pg_migrate(PGconn *c, int *version, char *err, size_t errlen)
{
    /* A migration may take longer than a query may; and the lock must be
     * waited for while another node migrates. */
    if (run(c, "SET statement_timeout = 0", "cannot configure the connection", err, errlen) != 0 ||
        run(c, "SELECT pg_advisory_lock(" FC__PG_MIGRATE_LOCK ")", "cannot take the migration lock",
            err, errlen) != 0)
        return FC_EIO;
    int rc = migrate_locked(c, version, err, errlen);
    char ignore[256];
    run(c, "SELECT pg_advisory_unlock(" FC__PG_MIGRATE_LOCK ")", "unlock", ignore, sizeof ignore);
    return rc;
}
