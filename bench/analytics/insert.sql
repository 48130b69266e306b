\set uid random(1, 1000)
INSERT INTO :tbl (user_id, title, description, priority, tags, due_date)
VALUES ('user-' || :uid, 'Prepare the quarterly report', 'Collect the numbers and write the summary.',
        'high', '{work,report}', NULL);
