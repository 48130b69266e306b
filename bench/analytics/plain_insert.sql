-- The floor: a plain one-table inbox, INSERT ... ON CONFLICT DO NOTHING.
\set n random(1, 1000000000)
INSERT INTO plain_inbox VALUES ('/bench/source', 'ev-' || :client_id || '-' || :n) ON CONFLICT DO NOTHING;
