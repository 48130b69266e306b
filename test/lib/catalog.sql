-- The catalog of the pg_taskevents extension in the current database, as
-- sorted text lines "<what> <object>: <fact>", for test/0910 to compare a
-- fresh install with an upgraded one (diff -u of two outputs reads as a
-- list of what the upgrade script got wrong).  Nothing here depends on
-- OIDs, creation order or the order of GRANTs.
--
-- What it covers, for every object that is a member of the extension or
-- lives in its schema:
--   member       the member list (\dx+), and objects in the schema that
--                are not members
--   extension    version, schema, relocatable
--   schema       owner, privileges, default privileges
--   relation     kind, persistence, owner, options, partitioning (key and
--                bounds), row security, replica identity, privileges,
--                dropped-column holes (C code writes rows by position)
--   column       position, type, NOT NULL, default, identity, generated,
--                collation, privileges
--   constraint   name and definition;  index: definition
--   trigger      definition and enabled state (internal ones left out)
--   policy, rule definition
--   view         definition, line by line
--   sequence     type, start, increment, bounds, cache, cycle, owner column
--   function     full definition line by line (pg_get_functiondef: args,
--                result, language, volatility, strictness, SECURITY
--                DEFINER, SET options, cost, body), kind, privileges
--   type         kind, composite attributes, enum labels, domain
--   config-dump  pg_extension_config_dump entries (table and condition)
--   init-privs   pg_init_privs entries (what pg_dump treats as the
--                extension's own privileges)
--   comment      comments on members and their columns
--   data         row counts of the tables and sequences' last values (what
--                the install script inserted: settings rows and the like)
--   event-trigger event, enabled state, function, tags
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
\pset footer off

WITH ext AS (
    SELECT e.oid, e.extname, e.extversion, e.extrelocatable, e.extnamespace, e.extconfig, e.extcondition
      FROM pg_extension e WHERE e.extname = 'pg_taskevents'
), nsp AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n, ext WHERE n.oid = ext.extnamespace
), members AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (               -- member relations and every relation in the schema
    SELECT c.* FROM pg_class c
     WHERE c.oid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
        OR (c.relnamespace = (SELECT oid FROM nsp) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
), funcs AS (
    SELECT p.* FROM pg_proc p
     WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
        OR p.pronamespace = (SELECT oid FROM nsp)
), types AS (              -- free-standing types (not a table's row type, not arrays)
    SELECT t.* FROM pg_type t
     WHERE (t.oid IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass)
            OR t.typnamespace = (SELECT oid FROM nsp))
       AND t.typelem = 0
       AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')

)
-- (privileges: one line per "grantee=privilege[*] by grantor" item; a NULL
-- ACL shows as the default it stands for)
SELECT what || ' ' || obj || ': ' || fact
  FROM (
    -- member list and schema contents
    SELECT 'member' AS what, pg_describe_object(classid, objid, objsubid) AS obj, 0 AS ord, 'member of the extension' AS fact
      FROM members
    UNION ALL
    SELECT 'member', format('%s %s', CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'table' END,
                            c.oid::regclass), 0, 'in the schema but NOT a member'
      FROM rels c
     WHERE c.oid NOT IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
    UNION ALL
    SELECT 'member', 'function ' || p.oid::regprocedure::text, 0, 'in the schema but NOT a member'
      FROM funcs p WHERE p.oid NOT IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
    UNION ALL
    -- the extension and its schema
    SELECT 'extension', extname, 0, format('version %s, schema %s, relocatable %s',
                                           extversion, extnamespace::regnamespace, extrelocatable)
      FROM ext
    UNION ALL
    SELECT 'schema', nspname, 0, 'owner ' || nspowner::regrole::text FROM nsp
    UNION ALL
    SELECT 'schema', nspname, 1, 'privilege ' || acl.item
      FROM nsp, LATERAL (SELECT format('%s=%s%s by %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                           a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END, a.grantor::regrole) AS item
                           FROM aclexplode(coalesce(nspacl, acldefault('n', nspowner))) a) acl
    UNION ALL
    SELECT 'schema', (SELECT nspname FROM nsp), 2,
           format('default privileges of %s on %s: %s', da.defaclrole::regrole,
                  CASE da.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                                        WHEN 'T' THEN 'types' ELSE 'schemas' END, da.defaclacl)
      FROM pg_default_acl da WHERE da.defaclnamespace IN (SELECT oid FROM nsp)
    UNION ALL
    -- relations
    SELECT 'relation', c.oid::regclass::text, 0,
           format('kind %s, persistence %s, owner %s, options %s, row security %s/%s, replica identity %s',
                  c.relkind, c.relpersistence, c.relowner::regrole, coalesce(c.reloptions::text, '()'),
                  c.relrowsecurity, c.relforcerowsecurity, c.relreplident)
      FROM rels c
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, 1, 'partitioned by ' || pg_get_partkeydef(c.oid)
      FROM rels c WHERE c.relkind = 'p'
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, 2,
           format('partition of %s %s', i.inhparent::regclass, pg_get_expr(c.relpartbound, c.oid))
      FROM rels c JOIN pg_inherits i ON i.inhrelid = c.oid
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, 3, 'privilege ' || acl.item
      FROM rels c, LATERAL (SELECT format('%s=%s%s by %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                           a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END, a.grantor::regrole) AS item
                              FROM aclexplode(coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))) a) acl
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, 4,
           format('%s dropped column(s): a fresh install has none, and rows built by attribute number (outbox.c) see the hole',
                  count(*))
      FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND a.attisdropped
     GROUP BY c.oid
    UNION ALL
    -- columns
    SELECT 'column', format('%s.%s', c.oid::regclass, quote_ident(a.attname)), 0,
           format('position %s, %s%s%s%s%s%s', rank() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                  format_type(a.atttypid, a.atttypmod),
                  CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                  CASE WHEN ad.adbin IS NOT NULL AND a.attgenerated = '' THEN ' default ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END,
                  CASE a.attidentity WHEN 'a' THEN ' generated always as identity' WHEN 'd' THEN ' generated by default as identity' ELSE '' END,
                  CASE WHEN a.attgenerated = 's' THEN ' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored' ELSE '' END,
                  CASE WHEN a.attcollation <> 0 AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid)
                       THEN ' collate ' || (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) ELSE '' END)
      FROM rels c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
     WHERE c.relkind <> 'S'
    UNION ALL
    SELECT 'column', format('%s.%s', c.oid::regclass, quote_ident(att.attname)), 1, 'privilege ' || acl.item
      FROM rels c JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped,
           LATERAL (SELECT format('%s=%s%s by %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                           a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END, a.grantor::regrole) AS item FROM aclexplode(att.attacl) a) acl
     WHERE att.attacl IS NOT NULL
    UNION ALL
    -- constraints, indexes, triggers, policies, rules
    SELECT 'constraint', format('%s %s', co.conrelid::regclass, quote_ident(co.conname)), 0,
           pg_get_constraintdef(co.oid)
      FROM pg_constraint co JOIN rels c ON c.oid = co.conrelid
    UNION ALL
    SELECT 'index', i.indexrelid::regclass::text, 0, pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN rels c ON c.oid = i.indrelid
    UNION ALL
    SELECT 'trigger', format('%s %s', t.tgrelid::regclass, quote_ident(t.tgname)), 0,
           format('%s (enabled %s)', pg_get_triggerdef(t.oid), t.tgenabled)
      FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy', format('%s %s', p.schemaname || '.' || p.tablename, quote_ident(p.policyname)), 0,
           format('%s %s to %s using (%s) with check (%s)', p.permissive, p.cmd, p.roles, p.qual, p.with_check)
      FROM pg_policies p WHERE p.schemaname IN (SELECT nspname FROM nsp)
    UNION ALL
    SELECT 'rule', format('%s %s', r.ev_class::regclass, quote_ident(r.rulename)), 0, pg_get_ruledef(r.oid)
      FROM pg_rewrite r JOIN rels c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN'
    UNION ALL
    -- views, line by line
    SELECT 'view', c.oid::regclass::text, l.n::int, l.line
      FROM rels c, regexp_split_to_table(pg_get_viewdef(c.oid, true), E'\n') WITH ORDINALITY AS l(line, n)
     WHERE c.relkind IN ('v', 'm')
    UNION ALL
    -- sequences
    SELECT 'sequence', c.oid::regclass::text, 0,
           format('%s start %s increment %s min %s max %s cache %s%s', s.seqtypid::regtype, s.seqstart, s.seqincrement,
                  s.seqmin, s.seqmax, s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)
      FROM rels c JOIN pg_sequence s ON s.seqrelid = c.oid
    UNION ALL
    SELECT 'sequence', c.oid::regclass::text, 1,
           format('owned by %s.%s (%s)', d.refobjid::regclass,
                  (SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = d.refobjid AND attnum = d.refobjsubid),
                  CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'serial / OWNED BY' END)
      FROM rels c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
       AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
     WHERE c.relkind = 'S'
    UNION ALL
    -- functions: the whole definition, line by line, and privileges
    SELECT 'function', p.oid::regprocedure::text, l.n::int, l.line
      FROM funcs p, regexp_split_to_table(pg_get_functiondef(p.oid), E'\n') WITH ORDINALITY AS l(line, n)
     WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, 0, format('kind %s, owner %s', p.prokind, p.proowner::regrole)
      FROM funcs p
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, 0, 'privilege ' || acl.item
      FROM funcs p, LATERAL (SELECT format('%s=%s%s by %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                           a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END, a.grantor::regrole) AS item
                               FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a) acl
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, 0,
           format('aggregate %s(%s) sfunc %s stype %s final %s init %s', p.proname, pg_get_function_arguments(p.oid),
                  a.aggtransfn, format_type(a.aggtranstype, NULL), a.aggfinalfn, a.agginitval)
      FROM funcs p JOIN pg_aggregate a ON a.aggfnoid = p.oid
    UNION ALL
    -- types
    SELECT 'type', t.oid::regtype::text, 0,
           format('kind %s, owner %s%s%s', t.typtype, t.typowner::regrole,
                  CASE WHEN t.typtype = 'd' THEN ', domain over ' || format_type(t.typbasetype, t.typtypmod)
                       || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END ELSE '' END,
                  CASE WHEN t.typdefault IS NOT NULL THEN ' default ' || t.typdefault ELSE '' END)
      FROM types t
    UNION ALL
    SELECT 'type', t.oid::regtype::text, a.attnum::int,
           format('attribute %s %s', quote_ident(a.attname), format_type(a.atttypid, a.atttypmod))
      FROM types t JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'type', t.oid::regtype::text, 1000 + rank() OVER (PARTITION BY t.oid ORDER BY e.enumsortorder)::int,
           'label ' || quote_literal(e.enumlabel)
      FROM types t JOIN pg_enum e ON e.enumtypid = t.oid
    UNION ALL
    SELECT 'type', t.oid::regtype::text, 2000, format('constraint %s %s', co.conname, pg_get_constraintdef(co.oid))
      FROM types t JOIN pg_constraint co ON co.contypid = t.oid
    UNION ALL
    -- config dump entries (what pg_dump dumps of the extension's tables)
    SELECT 'config-dump', c.cfg::regclass::text, 0,
           CASE WHEN coalesce(c.cond, '') = '' THEN 'every row' ELSE c.cond END
      FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(cfg, cond)
    UNION ALL
    -- initial privileges recorded for the extension's objects
    SELECT 'init-privs', pg_describe_object(ip.classoid, ip.objoid, ip.objsubid), 0,
           format('%s: %s', CASE ip.privtype WHEN 'e' THEN 'set by the extension script' ELSE 'initdb' END, acl.item)
      FROM pg_init_privs ip, LATERAL (SELECT format('%s=%s%s by %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                           a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END, a.grantor::regrole) AS item FROM aclexplode(ip.initprivs) a) acl
     WHERE (ip.classoid, ip.objoid) IN (SELECT classid, objid FROM members)
        OR (ip.classoid = 'pg_namespace'::regclass AND ip.objoid = (SELECT oid FROM nsp))
    UNION ALL
    -- comments on members, their columns, and the schema
    SELECT 'comment', pg_describe_object(ds.classoid, ds.objoid, ds.objsubid), 0, ds.description
      FROM pg_description ds
     WHERE (ds.classoid, ds.objoid) IN (SELECT classid, objid FROM members)
        OR (ds.classoid = 'pg_namespace'::regclass AND ds.objoid = (SELECT oid FROM nsp))
    UNION ALL
    -- rows the install script wrote (counts only: contents may hold times)
    SELECT 'data', c.oid::regclass::text, 0,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass),
                                                 false, true, '')))[1]::text || ' row(s)'
      FROM rels c WHERE c.relkind = 'r'
    UNION ALL
    SELECT 'data', format('%I.%I', s.schemaname, s.sequencename), 0, 'last value ' || coalesce(s.last_value::text, '(never used)')
      FROM pg_sequences s JOIN rels c ON c.relname = s.sequencename AND c.relnamespace::regnamespace::name = s.schemaname
    UNION ALL
    -- event triggers
    SELECT 'event-trigger', quote_ident(et.evtname), 0,
           format('on %s execute %s (enabled %s) tags %s', et.evtevent, et.evtfoid::regprocedure, et.evtenabled,
                  coalesce(et.evttags::text, '(all)'))
      FROM pg_event_trigger et WHERE et.oid IN (SELECT objid FROM members WHERE classid = 'pg_event_trigger'::regclass)
  ) facts
 ORDER BY what, obj, ord, fact;
