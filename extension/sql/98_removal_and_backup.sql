
-------------------------------------------------------------------------------
-- What users must not lose (see docs/SECURITY.md).
--
-- DROP EXTENSION would drop the outbox and the dead letters with it: the
-- event trigger below refuses while undelivered events or dead letters
-- that were not replayed exist, unless the session set
-- taskevents.discard_undelivered = on (extension/removal.c).
--
-- pg_dump reads the data of every table marked with
-- pg_extension_config_dump(), so the role that dumps the database needs
-- SELECT on them.  grant_backup(role) grants exactly that (and EXECUTE on
-- the dump filter _is_delivered()); the install grants it to the database
-- owner, so that the owner's pg_dump keeps undelivered events and dead
-- letters.  That role can therefore read the events of every attached
-- table.
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@._drop_guard() RETURNS event_trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'drop_guard';

COMMENT ON FUNCTION @extschema@._drop_guard() IS
    'Refuses DROP EXTENSION pg_taskevents (or DROP SCHEMA ... CASCADE of its schema) while events are undelivered, unless taskevents.discard_undelivered is on.';

CREATE EVENT TRIGGER taskevents_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION @extschema@._drop_guard();

CREATE FUNCTION @extschema@.grant_backup(backup_role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
BEGIN
    IF backup_role IS NULL THEN
        RAISE EXCEPTION 'backup_role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA @extschema@ TO %s', backup_role);
    FOR rel IN
        SELECT c.oid::regclass
          FROM pg_extension e
         CROSS JOIN LATERAL unnest(e.extconfig) AS x(oid)
          JOIN pg_class c ON c.oid = x.oid
         WHERE e.extname = 'pg_taskevents'
        UNION
        -- analytics day partitions are not members; pg_dump reads them too
        SELECT i.inhrelid::regclass
          FROM pg_inherits i
         WHERE i.inhparent = '@extschema@.analytics_events'::regclass
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', rel, backup_role);
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@._is_delivered(pg_catalog.xid8) TO %s', backup_role);
END;
$$;

COMMENT ON FUNCTION @extschema@.grant_backup(regrole) IS
    'Grant a role what pg_dump needs to dump the extension''s data (SELECT on the config tables, EXECUTE on _is_delivered()); the install grants it to the database owner.';

REVOKE EXECUTE ON FUNCTION @extschema@._drop_guard() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.grant_backup(regrole) FROM PUBLIC;

SELECT @extschema@.grant_backup(d.datdba::pg_catalog.regrole)
  FROM pg_catalog.pg_database d
 WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
