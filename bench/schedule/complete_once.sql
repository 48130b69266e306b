-- one pgbench transaction: complete the next open task of bench_once
WITH p AS (SELECT nextval('pick_once') AS id)
UPDATE bench_once t SET completed = true FROM p WHERE t.id = p.id;
