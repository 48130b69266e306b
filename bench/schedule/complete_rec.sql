-- one pgbench transaction: complete the next open task of bench_rec
WITH p AS (SELECT nextval('pick_rec') AS id)
UPDATE bench_rec t SET completed = true FROM p WHERE t.id = p.id;
