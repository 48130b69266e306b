-- One delivery of a new event: process_once() with a fresh (source, id).
\set n random(1, 1000000000)
SELECT taskevents.process_once('/bench/source', 'ev-' || :client_id || '-' || :n);
