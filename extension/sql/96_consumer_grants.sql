
-------------------------------------------------------------------------------
-- Consumer side: what pg_dump keeps, and who may call what.
--
-- The inbox is dumped whole, so a restored database still refuses the
-- duplicates the original would have refused; the settings rows are dumped
-- too (an INSERT replaces the row, see settings_replace()).  Analytics: the
-- default partition is dumped here; the day partitions are created at run
-- time by maintain_analytics(), are not members of the extension, and are
-- therefore dumped and restored like any table.
--
-- Privileges: 90_privileges.sql has revoked EXECUTE from PUBLIC on every
-- function above, process_once() and receive() included.  A consumer role
-- gets them with taskevents.grant_consumer(role); a reporting role gets the
-- analytics views with taskevents.grant_analytics(role).  Nothing here is
-- granted to PUBLIC: marking an event processed is a write that decides
-- whether some other service's event is ever applied.
-------------------------------------------------------------------------------

DO $$
BEGIN
    FOR s IN 0..15 LOOP
        PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.format('@extschema@.inbox_%s', s)::pg_catalog.regclass, '');
    END LOOP;
END;
$$;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.inbox_settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.analytics_settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.analytics_events_default', '');
