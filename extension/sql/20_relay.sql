
-------------------------------------------------------------------------------
-- Relay protocol (see "Relay protocol" in README.md).  Every function the
-- relay calls is SECURITY DEFINER with a pinned search_path, so the relay's
-- role needs EXECUTE on them and nothing else (grant_relay()).
-------------------------------------------------------------------------------

-- The query for the events of batch (prev, cur], selecting list, with
-- parameters $1 prev's last_id, $2 after_id, $3 cur, $4 prev's xmax, $5 lim:
-- the rows with id > after_id in id order, at most lim of them.
--
-- A page must cost the same however large the batch, so every branch reads
-- at most lim rows, in id order, from an index:
--  * each transaction that was in progress at prev and is visible in cur:
--    its rows from the (txid, id) index.  One branch per transaction, with
--    its xid as a constant, so the planner judges each one by its own
--    statistics.  (A single "txid = ANY(xip) ORDER BY id LIMIT" fetches and
--    sorts every row of those transactions for every page: quadratic in the
--    size of a bulk import that was running at a tick.  A LATERAL over the
--    xids is planned once for all of them and may pick the id index and
--    filter, which is as bad for a small transaction next to a big one.)
--  * transactions that started after prev: the id index (Merge Append over
--    the partitions).
-- Callers EXECUTE it, so it is planned with the actual values each time.
CREATE FUNCTION @extschema@._batch_query(prev pg_catalog.pg_snapshot, cur pg_catalog.pg_snapshot,
                                        selecting text)
RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := '';
    x xid8;
BEGIN
    FOR x IN SELECT u FROM pg_catalog.pg_snapshot_xip(prev) u
              WHERE pg_catalog.pg_visible_in_snapshot(u, cur) LOOP
        q := q || format('(SELECT %s FROM @extschema@.outbox o
                            WHERE o.txid OPERATOR(pg_catalog.=) %L::pg_catalog.xid8
                              AND o.id OPERATOR(pg_catalog.>) $2
                            ORDER BY o.id LIMIT $5)
                          UNION ALL ', selecting, x);
    END LOOP;
    RETURN 'SELECT * FROM (' || q ||
           format('(SELECT %s FROM @extschema@.outbox o
                     WHERE o.id OPERATOR(pg_catalog.>) GREATEST($1, $2)
                       AND o.txid OPERATOR(pg_catalog.>=) $4
                       AND pg_catalog.pg_visible_in_snapshot(o.txid, $3)
                     ORDER BY o.id LIMIT $5)', selecting) ||
           ') b ORDER BY b.id LIMIT $5';
END;
$$;

-- Create a consumer: its tick 0 sees no transaction, so its first batch is
-- every row in the outbox.  Rows whose txid lies in the future (restored
-- from a dump of another cluster) get the current transaction's id, so they
-- become visible when this transaction commits.
CREATE FUNCTION @extschema@._init_consumer(consumer text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.relay_consumers (consumer) VALUES (_init_consumer.consumer)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE @extschema@.outbox o SET txid = pg_catalog.pg_current_xact_id()
     WHERE o.txid >= pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot());
    INSERT INTO @extschema@.relay_ticks (consumer, tick_id, snapshot, last_id, slot)
    VALUES (_init_consumer.consumer, 0, '1:1:', 0, @extschema@._current_slot());
END;
$$;

CREATE FUNCTION @extschema@._check_epoch(consumer text, epoch bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- FOR SHARE: a takeover (UPDATE of this row) waits for us, or we see it.
    PERFORM 1 FROM @extschema@.relay_consumers c
      WHERE c.consumer = _check_epoch.consumer AND c.epoch = _check_epoch.epoch
      FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relay lease of consumer "%" is no longer held at epoch %', consumer, epoch
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Another relay took over; this one must stop claiming and acquire the lease again.';
    END IF;
END;
$$;

-- Take or renew the lease of consumer for holder.  Returns the fencing
-- epoch, or NULL while another holder's lease is live.
CREATE FUNCTION @extschema@.relay_lease(consumer text, holder text, epoch bigint,
                                        ttl interval DEFAULT '5 seconds')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c @extschema@.relay_consumers;
    l @extschema@.relay_leases;
BEGIN
    IF coalesce(consumer, '') = '' OR coalesce(holder, '') = '' THEN
        RAISE EXCEPTION 'consumer and holder must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ttl IS NULL OR ttl <= interval '0' THEN
        RAISE EXCEPTION 'lease ttl must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM @extschema@._init_consumer(consumer);
    -- the row lock serialises lease changes of a consumer; the row itself
    -- changes only on a take-over, and never its key.  FOR NO KEY UPDATE,
    -- not FOR UPDATE: the foreign keys of relay_leases, relay_ticks and
    -- relay_acks take FOR KEY SHARE on this row, and rotate_relay_state
    -- inserts into them while it holds an old slot's partitions ACCESS
    -- EXCLUSIVE, which the SELECT below then waits for: with FOR UPDATE the
    -- two deadlocked (specs/relay_state_rotation_race.spec, r_lease_blocked).
    SELECT * INTO c FROM @extschema@.relay_consumers r WHERE r.consumer = relay_lease.consumer
       FOR NO KEY UPDATE;
    SELECT * INTO l FROM @extschema@.relay_leases x
     WHERE x.consumer = relay_lease.consumer ORDER BY x.renewal_id DESC LIMIT 1;
    IF c.holder = relay_lease.holder AND c.epoch = relay_lease.epoch THEN
        INSERT INTO @extschema@.relay_leases (consumer, epoch, holder, lease_until, slot)
        VALUES (relay_lease.consumer, c.epoch, relay_lease.holder, clock_timestamp() + ttl,
                @extschema@._current_slot());
        RETURN c.epoch;
    ELSIF l.lease_until IS NULL OR l.lease_until < clock_timestamp() THEN
        UPDATE @extschema@.relay_consumers r SET holder = relay_lease.holder, epoch = c.epoch + 1
         WHERE r.consumer = relay_lease.consumer;
        INSERT INTO @extschema@.relay_leases (consumer, epoch, holder, lease_until, slot)
        VALUES (relay_lease.consumer, c.epoch + 1, relay_lease.holder, clock_timestamp() + ttl,
                @extschema@._current_slot());
        RETURN c.epoch + 1;
    END IF;
    RETURN NULL;
END;
$$;

-- Give up the lease (graceful shutdown), so a standby need not wait for it
-- to expire.
CREATE FUNCTION @extschema@.relay_release(consumer text, epoch bigint) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.relay_leases (consumer, epoch, holder, lease_until, slot)
    SELECT c.consumer, c.epoch, c.holder, '-infinity', @extschema@._current_slot()
      FROM @extschema@.relay_consumers c
     WHERE c.consumer = relay_release.consumer AND c.epoch = relay_release.epoch
    RETURNING true;
$$;

-- Cut a new batch after the newest tick if there is anything in it.
-- Returns the new tick id, or NULL when nothing new committed (then it
-- writes nothing and, taking no row lock, uses no transaction id).
--
-- Whether the batch has a row is asked with the branches of _batch_query:
-- not at all when no id was drawn since the last tick and no transaction
-- in progress at it has committed; then the newer rows by the id index, a
-- static statement whose kept plan is that index scan (ORDER BY id LIMIT
-- 1, no sort); then the rows of the transactions that were in progress,
-- by the (txid, id) index, planned for their ids each time.  No plan here
-- may read the outbox sequentially, whatever its statistics say
-- (enable_seqscan = off): an outbox partition that has not been analyzed
-- since it filled (autovacuum is behind, or it was just rotated) made
-- "txid = ANY (...)" a sequential scan that expected to find a row at
-- once and read the whole partition, at every tick that had to look for
-- a transaction that was in progress at the tick before, which is most
-- ticks with several writers (bench/relay/README.md, 4 Dec: 1,688 scans
-- reading 64 million rows in 30 s).  jit = off: a plan with a disabled
-- sort costs more than jit_above_cost, and compiling it took 50-70 ms (the
-- sort of the snapshot's xids below).
CREATE FUNCTION @extschema@.relay_tick(consumer text, epoch bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
    last @extschema@.relay_ticks;
    seq_last bigint;
    snap pg_snapshot;
    own_xid xid8;
    committed xid8[];
    found_id bigint;
    found_any boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'relay_tick() must run in a READ COMMITTED transaction'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    -- A plain read first: an idle poll (every few ms) must not take a row
    -- lock, which would assign it a transaction id each time.
    IF NOT EXISTS (SELECT 1 FROM @extschema@.relay_consumers c
                    WHERE c.consumer = relay_tick.consumer AND c.epoch = relay_tick.epoch) THEN
        PERFORM @extschema@._check_epoch(consumer, epoch);
    END IF;
    SELECT * INTO last FROM @extschema@.relay_ticks t
     WHERE t.consumer = relay_tick.consumer ORDER BY t.tick_id DESC LIMIT 1;
    -- The sequence first, then (in a later statement, so a later snapshot)
    -- the snapshot.
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO seq_last
      FROM @extschema@.outbox_id_seq s;
    SELECT pg_current_snapshot() INTO snap;
    -- The transactions in progress at the last tick that are visible now;
    -- any other transaction that wrote events since drew ids above
    -- last.last_id (see below), so with none of those and no id drawn since,
    -- the batch is empty.  (An id drawn after seq_last was read by a
    -- transaction already visible in snap is found by the next tick: its
    -- commit came after the wait that led here, so relay_wait() returns at
    -- once.)
    committed := ARRAY(SELECT u FROM pg_catalog.pg_snapshot_xip(last.snapshot) u
                        WHERE pg_catalog.pg_visible_in_snapshot(u, snap));
    IF seq_last OPERATOR(pg_catalog.=) last.last_id AND pg_catalog.cardinality(committed) OPERATOR(pg_catalog.=) 0 THEN
        RETURN NULL;
    END IF;
    SELECT o.id INTO found_id FROM @extschema@.outbox o
     WHERE o.id OPERATOR(pg_catalog.>) last.last_id
       AND o.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmax(last.snapshot)
       AND pg_catalog.pg_visible_in_snapshot(o.txid, snap)
     ORDER BY o.id LIMIT 1;
    IF found_id IS NULL THEN
        IF pg_catalog.cardinality(committed) OPERATOR(pg_catalog.=) 0 THEN
            RETURN NULL;
        END IF;
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM @extschema@.outbox o
                                 WHERE o.txid OPERATOR(pg_catalog.=) ANY ($1))'
           INTO found_any USING committed;
        IF NOT found_any THEN
            RETURN NULL;
        END IF;
    END IF;
    -- The fence (FOR SHARE) assigns this transaction its id, after snap.
    PERFORM @extschema@._check_epoch(consumer, epoch);
    own_xid := pg_current_xact_id();
    -- pg_current_snapshot()'s xmax is the latest *completed* xid + 1, not
    -- the next xid to be assigned: a transaction with an xid in
    -- [xmax, own_xid) may have been running at snap, absent from its xip,
    -- and have drawn ids <= seq_last, so "txid >= xmax AND id > last_id"
    -- would skip it forever.  List those xids as in progress (no visibility
    -- changes: they are invisible in snap either way) and move xmax to
    -- own_xid: every xid >= own_xid was assigned after seq_last was read,
    -- so its ids are above seq_last.
    IF own_xid > pg_catalog.pg_snapshot_xmax(snap) THEN
        snap := (pg_catalog.pg_snapshot_xmin(snap)::text || ':' || own_xid::text || ':' ||
                 pg_catalog.array_to_string(ARRAY(
                     SELECT x FROM (SELECT pg_catalog.pg_snapshot_xip(snap)::text::bigint AS x
                                    UNION ALL
                                    SELECT pg_catalog.generate_series(pg_catalog.pg_snapshot_xmax(snap)::text::bigint,
                                                                      own_xid::text::bigint - 1)) s
                     ORDER BY x), ','))::pg_catalog.pg_snapshot;
    END IF;
    INSERT INTO @extschema@.relay_ticks (consumer, tick_id, snapshot, last_id, slot)
    VALUES (relay_tick.consumer, last.tick_id + 1, snap, seq_last, @extschema@._current_slot());
    RETURN last.tick_id + 1;
END;
$$;

-- Wait for a commit that wrote events (extension/wakeup.c): CALL
-- taskevents.relay_wait(timeout_ms, commits) returns this database's
-- commit counter when it differs from commits, or after timeout_ms.  It
-- ends the CALL's transaction before it waits, so the waiting backend holds
-- no snapshot.  Needs the library in shared_preload_libraries; otherwise it
-- returns NULL at once and relay_wakeup_mode() says 'poll'.
CREATE PROCEDURE @extschema@.relay_wait(timeout_ms integer, INOUT commits bigint DEFAULT NULL)
LANGUAGE C
AS 'MODULE_PATHNAME', 'relay_wait';

CREATE FUNCTION @extschema@.relay_wakeup_mode() RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'relay_wakeup_mode';

-- The newest tick of consumer (the relay resumes reading up to it).
CREATE FUNCTION @extschema@.relay_last_tick(consumer text) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tick_id FROM @extschema@.relay_ticks t
     WHERE t.consumer = relay_last_tick.consumer ORDER BY t.tick_id DESC LIMIT 1;
$$;

-- The rows of a chunk of relay_fetch_page() (extension/relaypage.c).
CREATE FUNCTION @extschema@._relay_page_rows(page bytea)
RETURNS TABLE (id bigint, topic text, partition_key text, event text, created_at timestamptz)
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'relay_page_rows';

-- The next page of batch tick_id: events with id > after_id, in id order,
-- as bytea chunks of whole events (the relay's call; relay_fetch() gives
-- the same rows).  In C (extension/relaypage.c): the page query's rows are
-- rendered straight into the page, with no tuplestore and no message per
-- row.
-- A page is the next lim rows by id: read in id order from the indexes and
-- stop (Merge Append, Limit).  A bitmap scan followed by a sort reads
-- every remaining row of the batch for every page, so a large batch drained
-- in quadratic time (a 200,000-event drain: 2.4-2.9 s waiting for
-- PostgreSQL with them, 0.95-1.1 s without; bench/relay/README.md).
-- With a sort disabled, a plan that still needs one costs more than
-- jit_above_cost, and JIT compiling it takes tens of milliseconds: jit off.
-- The page query's generic plan is that same plan, but the plan cache
-- went on making a custom plan for every page (its cost, with the values,
-- came out lower): planning was 5 % of the backend's time in a drain
-- (bench/relay/README.md), so the kept plan is forced generic.
CREATE FUNCTION @extschema@.relay_fetch_page(consumer text, tick_id bigint, after_id bigint,
                                             lim integer DEFAULT 1000)
RETURNS SETOF bytea
LANGUAGE C VOLATILE SECURITY DEFINER ROWS 20 SET search_path = pg_catalog, pg_temp
SET enable_bitmapscan = off
SET enable_sort = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS 'MODULE_PATHNAME', 'relay_fetch_page';

-- The next page of batch tick_id as rows: relay_fetch_page()'s, read back.
CREATE FUNCTION @extschema@.relay_fetch(consumer text, tick_id bigint, after_id bigint,
                                        lim integer DEFAULT 1000)
RETURNS TABLE (id bigint, topic text, partition_key text, event text, created_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id, r.topic, r.partition_key, r.event, r.created_at
      FROM @extschema@.relay_fetch_page(relay_fetch.consumer, relay_fetch.tick_id,
                                        relay_fetch.after_id, relay_fetch.lim) p (chunk),
           LATERAL @extschema@._relay_page_rows(p.chunk) r
     ORDER BY r.id;
$$;

-- Where the consumer stands: batches before tick_id are resolved, and in
-- batch tick_id every event with id <= cursor_id (the whole batch when
-- batch_done).
CREATE FUNCTION @extschema@.relay_position(consumer text,
                                           OUT tick_id bigint, OUT cursor_id bigint, OUT batch_done boolean)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(a.tick_id, 0), coalesce(a.cursor_id, 0), coalesce(a.batch_done, true)
      FROM (SELECT 1) one
      LEFT JOIN LATERAL (SELECT * FROM @extschema@.relay_acks x
                          WHERE x.consumer = relay_position.consumer
                          ORDER BY x.ack_id DESC LIMIT 1) a ON true;
$$;

-- Record progress, fenced by the lease epoch.  Positions never go back.
CREATE FUNCTION @extschema@.relay_ack(consumer text, epoch bigint, tick_id bigint,
                                      cursor_id bigint, batch_done boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos_tick bigint;
    pos_cursor bigint;
    pos_done boolean;
BEGIN
    PERFORM @extschema@._check_epoch(consumer, epoch);
    -- Only a position that names a real batch: an ack of a tick that does
    -- not exist would make every event look delivered (pending_events,
    -- maintain() and pg_dump read the position through its tick).
    IF tick_id IS NULL OR cursor_id IS NULL OR batch_done IS NULL
       OR NOT EXISTS (SELECT 1 FROM @extschema@.relay_ticks t
                       WHERE t.consumer = relay_ack.consumer AND t.tick_id = relay_ack.tick_id) THEN
        RAISE EXCEPTION 'batch % of consumer "%" does not exist', tick_id, consumer
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Acknowledge only ticks returned by relay_tick() or relay_last_tick().';
    END IF;
    -- relay_position()'s query, here as a static statement: a call of
    -- that SECURITY DEFINER SQL function planned its body again each time.
    SELECT x.tick_id, x.cursor_id, x.batch_done INTO pos_tick, pos_cursor, pos_done
      FROM @extschema@.relay_acks x
     WHERE x.consumer = relay_ack.consumer ORDER BY x.ack_id DESC LIMIT 1;
    IF NOT FOUND THEN
        pos_tick := 0; pos_cursor := 0; pos_done := true;
    END IF;
    IF (relay_ack.tick_id, CASE WHEN relay_ack.batch_done THEN 9223372036854775807 ELSE relay_ack.cursor_id END)
       < (pos_tick, CASE WHEN pos_done THEN 9223372036854775807 ELSE pos_cursor END) THEN
        RAISE EXCEPTION 'relay position of consumer "%" cannot go back from (%, %, %) to (%, %, %)',
            consumer, pos_tick, pos_cursor, pos_done, tick_id, cursor_id, batch_done
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.relay_acks (consumer, epoch, tick_id, cursor_id, batch_done, slot)
    VALUES (relay_ack.consumer, relay_ack.epoch, relay_ack.tick_id, relay_ack.cursor_id, relay_ack.batch_done,
            @extschema@._current_slot());
END;
$$;

-- Keep an event the relay gave up on.  Returns the dead letter's id.
CREATE FUNCTION @extschema@.relay_dead_letter(consumer text, epoch bigint, outbox_id bigint,
                                              topic text, dlq_topic text, partition_key text,
                                              event text, reason text, attempts integer,
                                              first_failed_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev jsonb;
    dl bigint;
BEGIN
    PERFORM @extschema@._check_epoch(consumer, epoch);
    BEGIN
        ev := event::jsonb;
    EXCEPTION WHEN others THEN
        ev := pg_catalog.jsonb_build_object('unparsable', event);
    END;
    INSERT INTO @extschema@.dead_letters AS d
           (consumer, outbox_id, event_id, topic, dlq_topic, partition_key, event, reason,
            attempts, first_failed_at)
    VALUES (relay_dead_letter.consumer, relay_dead_letter.outbox_id,
            CASE WHEN pg_catalog.jsonb_typeof(ev) = 'object' THEN ev ->> 'id' END,
            relay_dead_letter.topic, relay_dead_letter.dlq_topic, relay_dead_letter.partition_key,
            ev, relay_dead_letter.reason, relay_dead_letter.attempts, relay_dead_letter.first_failed_at)
    RETURNING d.dead_letter_id INTO dl;
    RETURN dl;
END;
$$;

-- Publish a dead letter again, with its original CloudEvent id.
CREATE FUNCTION @extschema@.replay_dead_letter(dead_letter_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.dead_letters;
BEGIN
    SELECT * INTO d FROM @extschema@.dead_letters x
     WHERE x.dead_letter_id = replay_dead_letter.dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM @extschema@._enqueue_event(d.topic, d.partition_key, d.event);
    UPDATE @extschema@.dead_letters x SET replayed_at = now()
     WHERE x.dead_letter_id = replay_dead_letter.dead_letter_id;
    RETURN d.event_id;
END;
$$;

-------------------------------------------------------------------------------
-- Delivery state, the backlog view and maintenance.
-------------------------------------------------------------------------------

-- Per consumer: done_snapshot (every transaction visible in it is
-- delivered), and the batch in progress (batch_snapshot, cursor_id).
CREATE FUNCTION @extschema@._consumer_positions()
RETURNS TABLE (consumer text, done_snapshot pg_catalog.pg_snapshot,
               batch_snapshot pg_catalog.pg_snapshot, cursor_id bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.consumer,
           (SELECT t.snapshot FROM @extschema@.relay_ticks t
             WHERE t.consumer = c.consumer
               AND t.tick_id = CASE WHEN p.batch_done THEN p.tick_id ELSE p.tick_id - 1 END),
           CASE WHEN NOT p.batch_done THEN
               (SELECT t.snapshot FROM @extschema@.relay_ticks t
                 WHERE t.consumer = c.consumer AND t.tick_id = p.tick_id) END,
           CASE WHEN NOT p.batch_done THEN p.cursor_id END
      FROM @extschema@.relay_consumers c
      CROSS JOIN LATERAL @extschema@.relay_position(c.consumer) p;
$$;

CREATE VIEW @extschema@.pending_events AS
WITH pos AS (SELECT * FROM @extschema@._consumer_positions())
SELECT e.id, o.created_at, @extschema@._event_topic(o.envelope, o.topic) AS topic, e.partition_key,
       @extschema@._event_json(e.event_id, o.envelope, e.type, e.subject, o.created_at, o.topic,
                               e.partition_key, o.traceparent, e.data)::pg_catalog.jsonb AS event
  FROM @extschema@.outbox o
 CROSS JOIN LATERAL @extschema@._outbox_unpack(o.id, o.event_id, o.type, o.subject,
                                              o.partition_key, o.data, o.earlier) e
 WHERE NOT EXISTS (SELECT 1 FROM pos)
    OR EXISTS (SELECT 1 FROM pos
                WHERE NOT coalesce(pg_catalog.pg_visible_in_snapshot(o.txid, pos.done_snapshot), false)
                  AND NOT coalesce(pg_catalog.pg_visible_in_snapshot(o.txid, pos.batch_snapshot)
                                   AND e.id OPERATOR(pg_catalog.<=) pos.cursor_id, false))
 ORDER BY e.id;

COMMENT ON VIEW @extschema@.pending_events IS
    'Committed events not yet delivered to every relay consumer, in delivery order.';

-- An event counts as delivered only when a tick that exists covers it: a
-- position whose tick is missing (done_snapshot NULL) delivers nothing.

-- Backlog of one consumer, for the relay's metrics.  Only rows with a txid
-- at or above the done snapshot's xmin can be pending, so the txid index
-- bounds the scan by the backlog, not by the size of the outbox: by that
-- index whatever the statistics say (enable_seqscan = off; a partition
-- not yet analyzed was read whole at every sample, as relay_tick's was),
-- and jit = off for the plans that have only a sequential scan left.
CREATE FUNCTION @extschema@.relay_backlog(consumer text,
                                          OUT pending bigint, OUT oldest_pending timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    pos record;
BEGIN
    SELECT * INTO pos FROM @extschema@._consumer_positions() p WHERE p.consumer = relay_backlog.consumer;
    -- (a row holds 1 + _outbox_earlier(earlier) events, ids id - that .. id)
    IF NOT FOUND OR pos.done_snapshot IS NULL THEN
        SELECT pg_catalog.sum(1 OPERATOR(pg_catalog.+) @extschema@._outbox_earlier(o.earlier)),
               pg_catalog.min(o.created_at)
          INTO pending, oldest_pending FROM @extschema@.outbox o;
        pending := coalesce(pending, 0);
        RETURN;
    END IF;
    EXECUTE 'SELECT pg_catalog.count(*), pg_catalog.min(o.created_at)
               FROM @extschema@.outbox o
              CROSS JOIN LATERAL pg_catalog.generate_series(
                        o.id OPERATOR(pg_catalog.-) @extschema@._outbox_earlier(o.earlier), o.id) e(id)
              WHERE o.txid OPERATOR(pg_catalog.>=) $1
                AND NOT pg_catalog.pg_visible_in_snapshot(o.txid, $2)
                AND NOT coalesce(pg_catalog.pg_visible_in_snapshot(o.txid, $3)
                                 AND e.id OPERATOR(pg_catalog.<=) $4, false)'
       INTO pending, oldest_pending
      USING pg_catalog.pg_snapshot_xmin(pos.done_snapshot), pos.done_snapshot, pos.batch_snapshot, pos.cursor_id;
END;
$$;

-- Are rows of outbox partition part (its caller holds its lock) still
-- undelivered to some consumer?  Only rows with a txid at or above a
-- consumer's done snapshot's xmin can be, so each consumer costs a range
-- of the txid index, as long as the backlog in the partition, not a read
-- of the partition: one statement over the partition and every position
-- (an OR with a clause on the position alone) read all of it, under the
-- ACCESS EXCLUSIVE lock the relay's next fetch then waited for (400,000
-- rows: 103 ms, bench/README.md).  By the index whatever the statistics
-- say: the partition that just stopped filling is not analyzed yet.
CREATE FUNCTION @extschema@._outbox_partition_pending(part regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    pos record;
    pending boolean;
BEGIN
    FOR pos IN SELECT p.done_snapshot FROM @extschema@._consumer_positions() p LOOP
        IF pos.done_snapshot IS NULL THEN
            RETURN true;    -- a position without its tick holds every row back
        END IF;
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s o
                         WHERE o.txid OPERATOR(pg_catalog.>=) $1
                           AND NOT pg_catalog.pg_visible_in_snapshot(o.txid, $2))', part)
           INTO pending
          USING pg_catalog.pg_snapshot_xmin(pos.done_snapshot), pos.done_snapshot;
        IF pending THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END;
$$;

-- Maintenance operation rotate_outbox: truncate every outbox partition
-- other than the current one whose rows are all delivered to every
-- consumer.  Safe at any time: the partition is locked (NOWAIT) before the
-- check, so a writer still inserting into it makes us skip it, never lose
-- its rows.  Before each TRUNCATE, in the same transaction, it calls the
-- functions registered with phase 'before_outbox_truncate' (analytics).
-- done = partitions truncated.
CREATE FUNCTION @extschema@._maint_rotate_outbox(OUT done bigint, OUT failed bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s integer;
    part text;
    hook regprocedure;
    pending boolean;
    nonempty boolean;
BEGIN
    done := 0;
    failed := 0;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.relay_consumers) THEN
        RETURN;     -- no relay ever ran: every event waits
    END IF;
    FOR s IN 0..2 LOOP
        CONTINUE WHEN s = @extschema@._current_slot();
        part := pg_catalog.format('@extschema@.outbox_%s', s);
        BEGIN
            EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', part);
            pending := @extschema@._outbox_partition_pending(part::pg_catalog.regclass);
            EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s)', part) INTO nonempty;
            IF NOT pending AND nonempty THEN
                FOR hook IN SELECT m.function FROM @extschema@.maintenance_registry m
                             WHERE m.phase = 'before_outbox_truncate' ORDER BY m.position, m.operation LOOP
                    EXECUTE pg_catalog.format('SELECT %s($1)', hook::pg_catalog.regproc) USING part::pg_catalog.regclass;
                END LOOP;
                EXECUTE pg_catalog.format('TRUNCATE %s', part);
                done := done + 1;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            NULL;   -- a writer or reader holds it; try again next time
        END;
    END LOOP;
END;
$$;

-- Maintenance operation rotate_relay_state: truncate the relay_leases,
-- relay_ticks and relay_acks partitions of every slot but the current one,
-- after carrying into the current slot what is still needed: each
-- consumer's newest lease and ack, and the ticks of its position onwards
-- (the batch in progress and the one before).  No DELETE, so no dead
-- tuples for a long transaction elsewhere to keep.  done = partitions
-- truncated (three per slot).
CREATE FUNCTION @extschema@._maint_rotate_relay_state(OUT done bigint, OUT failed bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s integer;
    cur smallint := @extschema@._current_slot();
    nonempty boolean;
BEGIN
    done := 0;
    failed := 0;
    FOR s IN 0..2 LOOP
        CONTINUE WHEN s = cur;
        -- a slot rotated before is empty: nothing to do, nothing counted
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM @extschema@.relay_leases_%s)
                            OR EXISTS (SELECT 1 FROM @extschema@.relay_ticks_%s)
                            OR EXISTS (SELECT 1 FROM @extschema@.relay_acks_%s)', s, s, s) INTO nonempty;
        CONTINUE WHEN NOT nonempty;
        BEGIN
            EXECUTE format('LOCK TABLE @extschema@.relay_leases_%s, @extschema@.relay_ticks_%s, @extschema@.relay_acks_%s
                            IN ACCESS EXCLUSIVE MODE NOWAIT', s, s, s);
            EXECUTE format(
                'INSERT INTO @extschema@.relay_ticks (consumer, tick_id, snapshot, last_id, created_at, slot)
                 SELECT t.consumer, t.tick_id, t.snapshot, t.last_id, t.created_at, $1
                   FROM @extschema@.relay_ticks_%s t
                   JOIN (SELECT c.consumer, p.tick_id FROM @extschema@.relay_consumers c
                          CROSS JOIN LATERAL @extschema@.relay_position(c.consumer) p) pos
                     ON pos.consumer = t.consumer
                  WHERE t.tick_id >= pos.tick_id - 1', s) USING cur;
            EXECUTE format(
                'INSERT INTO @extschema@.relay_acks
                        (consumer, ack_id, epoch, tick_id, cursor_id, batch_done, acked_at, slot)
                 OVERRIDING SYSTEM VALUE
                 SELECT a.consumer, a.ack_id, a.epoch, a.tick_id, a.cursor_id, a.batch_done, a.acked_at, $1
                   FROM @extschema@.relay_acks_%s a
                  WHERE a.ack_id = (SELECT max(x.ack_id) FROM @extschema@.relay_acks x
                                     WHERE x.consumer = a.consumer)', s) USING cur;
            EXECUTE format(
                'INSERT INTO @extschema@.relay_leases
                        (consumer, renewal_id, epoch, holder, lease_until, renewed_at, slot)
                 OVERRIDING SYSTEM VALUE
                 SELECT l.consumer, l.renewal_id, l.epoch, l.holder, l.lease_until, l.renewed_at, $1
                   FROM @extschema@.relay_leases_%s l
                  WHERE l.renewal_id = (SELECT max(x.renewal_id) FROM @extschema@.relay_leases x
                                         WHERE x.consumer = l.consumer)', s) USING cur;
            EXECUTE format('TRUNCATE @extschema@.relay_leases_%s, @extschema@.relay_ticks_%s, @extschema@.relay_acks_%s',
                           s, s, s);
            done := done + 3;
        EXCEPTION WHEN lock_not_available THEN
            NULL;   -- a relay is using it; next time
        END;
    END LOOP;
END;
$$;

-- Who holds each consumer's lease and where it stands.
CREATE VIEW @extschema@.relay_status AS
SELECT c.consumer, c.epoch, l.holder, l.lease_until, l.renewed_at,
       p.tick_id, p.cursor_id, p.batch_done
  FROM @extschema@.relay_consumers c
  LEFT JOIN LATERAL (SELECT x.holder, x.lease_until, x.renewed_at FROM @extschema@.relay_leases x
                      WHERE x.consumer OPERATOR(pg_catalog.=) c.consumer
                      ORDER BY x.renewal_id DESC LIMIT 1) l ON true
 CROSS JOIN LATERAL @extschema@.relay_position(c.consumer) p;

COMMENT ON VIEW @extschema@.relay_status IS
    'Per relay consumer: its fencing epoch, the holder of its lease and until when, and its position (tick and cursor).';

INSERT INTO @extschema@.maintenance_registry (operation, feature, function, period, position, description) VALUES
    ('rotate_outbox', 'outbox', '@extschema@._maint_rotate_outbox()', '5 seconds', 20,
     'Truncate the outbox partitions every consumer is done with (recording their events for analytics first, when that is on).'),
    ('rotate_relay_state', 'relay', '@extschema@._maint_rotate_relay_state()', '5 seconds', 30,
     'Truncate the relay''s lease, tick and ack partitions of past slots, carrying what is still needed.');

-- Deprecated (0.1.0's maintenance call; taskevents-relay 0.2.0 runs the
-- maintenance list instead): run the outbox, relay, analytics and inbox
-- operations of the list once and return the partitions truncated.
CREATE FUNCTION @extschema@.maintain() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op record;
    r record;
    truncated integer := 0;
BEGIN
    FOR op IN SELECT m.operation FROM @extschema@.maintenance_registry m
               WHERE m.phase = 'periodic' AND m.feature <> 'reminders'
               ORDER BY m.position, m.operation LOOP
        SELECT * INTO r FROM @extschema@.run_maintenance(op.operation);
        IF op.operation = 'rotate_outbox' THEN
            truncated := r.done;
        END IF;
    END LOOP;
    RETURN truncated;
END;
$$;

COMMENT ON FUNCTION @extschema@.maintain() IS
    'Deprecated: run the maintenance list''s outbox, relay, analytics and inbox operations once; returns the outbox partitions truncated.';

-- Grant a role exactly what taskevents-relay needs.
CREATE FUNCTION @extschema@.grant_relay(relay_role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', relay_role);
    FOREACH f IN ARRAY ARRAY[
        '@extschema@.relay_lease(text, text, bigint, interval)',
        '@extschema@.relay_release(text, bigint)',
        '@extschema@.relay_tick(text, bigint)',
        '@extschema@.relay_last_tick(text)',
        '@extschema@.relay_fetch(text, bigint, bigint, integer)',
        '@extschema@.relay_fetch_page(text, bigint, bigint, integer)',
        '@extschema@.relay_position(text)',
        '@extschema@.relay_ack(text, bigint, bigint, bigint, boolean)',
        '@extschema@.relay_dead_letter(text, bigint, bigint, text, text, text, text, text, integer, timestamptz)',
        '@extschema@.relay_backlog(text)',
        '@extschema@.relay_wait(integer, bigint)',
        '@extschema@.relay_wakeup_mode()',
        '@extschema@.maintain()',
        '@extschema@.maintenance_operations()',
        '@extschema@.run_maintenance(text)',
        -- callable directly too (extension/sql/40_reminders.sql)
        '@extschema@.fire_due_reminders(timestamptz, integer)']
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', f, relay_role);
    END LOOP;
END;
$$;
