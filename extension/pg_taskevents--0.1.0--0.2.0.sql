-- pg_taskevents--0.1.0--0.2.0.sql
--   ALTER EXTENSION pg_taskevents UPDATE from 0.1.0 (git tag v0.1.0) to 0.2.0.
--
-- After this script, a database upgraded from 0.1.0 must have exactly the
-- catalog of a fresh 0.2.0 install: test/0710 compares the two (members,
-- table, view and function definitions, privileges, config-dump entries)
-- and prints every difference; test/0700 upgrades a database in service
-- and checks that no pending event, dead letter or inbox entry is lost.
--
-- How to extend it, for each change to the files in extension/sql/ since
-- v0.1.0 (`git diff v0.1.0 -- extension/sql` lists them):
--
--  - Put the change in the section named after the file it was made in,
--    in the order of that file, so a reader can hold the two side by side.
--  - Changed function body or attributes: CREATE OR REPLACE FUNCTION with
--    the install script's text.  A changed signature or result type:
--    DROP FUNCTION the old one first (and re-create what depends on it).
--    Re-state SECURITY DEFINER and SET search_path: OR REPLACE keeps
--    neither unless they are written again.
--  - New objects: created as in the install script; they become members
--    of the extension by themselves.  Dropped objects: DROP them.
--  - Tables with data: ALTER TABLE, never drop and re-create; an event in
--    the outbox keeps its id, txid and CloudEvent id.  New tables that
--    hold user data: pg_extension_config_dump() as in the install script.
--  - Privileges: repeat the install script's GRANT/REVOKE for new or
--    re-created objects (a DROP + CREATE loses the old ACL).
--  - Everything schema-qualified with @extschema@ or pg_catalog, as in the
--    install script: this runs with the updating user's search_path.
--  - Old release scripts (pg_taskevents--0.1.0.sql) are never edited; this
--    file is never edited either once 0.2.0 is released: 0.2.0 -> 0.3.0
--    gets its own file.
--
-- The C library: 0.2.0's pg_taskevents.so keeps every C symbol 0.1.0's SQL
-- names, so between the package upgrade (new library) and this script the
-- 0.1.0 SQL objects still resolve.

\echo Use "ALTER EXTENSION pg_taskevents UPDATE TO '0.2.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- 00_outbox.sql: the outbox, its sequence, dead letters
-- (no change yet)

-------------------------------------------------------------------------------
-- 10_attach.sql: attach(), detach(), the registry, the row trigger
-- (no change yet)

-------------------------------------------------------------------------------
-- 20_relay.sql: the relay protocol, maintain(), replay_dead_letter()
-- (no change yet)

-------------------------------------------------------------------------------
-- 30_recurrence.sql: recurring tasks
-- (no change yet)

-------------------------------------------------------------------------------
-- 40_reminders.sql: reminders and notifications
-- (no change yet)

-------------------------------------------------------------------------------
-- 50_inbox.sql: the process-once inbox
-- (no change yet)

-------------------------------------------------------------------------------
-- 60_analytics.sql: event analytics
-- (no change yet)

-------------------------------------------------------------------------------
-- 90_privileges.sql: privileges and config-dump entries
-- (no change yet)

-------------------------------------------------------------------------------
-- 96_consumer_grants.sql: grant_consumer(), grant_analytics()
-- (no change yet)
