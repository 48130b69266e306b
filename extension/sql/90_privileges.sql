
-------------------------------------------------------------------------------
-- pg_dump keeps what users must not lose: the registry, undelivered events
-- (with the sequence, so restored ids stay below new ones) and dead letters.
-- Relay state is not dumped: after a restore the relay starts a new
-- consumer, whose first batch is every restored event.
-------------------------------------------------------------------------------

-- Is this outbox row delivered to every consumer?  (Used by pg_dump.)
CREATE FUNCTION @extschema@._is_delivered(txid pg_catalog.xid8) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM @extschema@.relay_consumers)
       AND NOT EXISTS (SELECT 1 FROM @extschema@._consumer_positions() p
                        WHERE NOT coalesce(pg_catalog.pg_visible_in_snapshot(_is_delivered.txid, p.done_snapshot), false));
$$;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attached_tables', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_0', 'WHERE NOT @extschema@._is_delivered(txid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_1', 'WHERE NOT @extschema@._is_delivered(txid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_2', 'WHERE NOT @extschema@._is_delivered(txid)');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.dead_letters', 'dead_letter_id'), '');

-------------------------------------------------------------------------------
-- Privileges: PUBLIC may use the schema but owns nothing in it.  Writing a
-- task needs no grant (the trigger inserts as the extension owner).
-- publish() and the DBA functions need an explicit GRANT EXECUTE; the
-- relay's needs are granted by grant_relay().
-------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA @extschema@ FROM PUBLIC;
