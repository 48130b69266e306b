#!/usr/bin/env bash
# The relay and a Dapr publisher put the same key on the same partition.
# Dapr's Kafka pub/sub produces with Sarama's default hash partitioner
# (sarama.NewHashPartitioner: FNV-1a); the relay's default partitioner is
# librdkafka's fnv1a_random.  200 keys (user ids of several shapes) on a
# 6-partition topic: the relay writes them (default settings), the Go program
# writes them with Sarama as Dapr configures it, the partitions must be equal
# key by key.  Then the relay with -X partitioner=murmur2_random (the Java
# client's hashing) must disagree for most keys: proof the comparison bites.
set -euo pipefail
source "$(dirname "$0")/lib/relay.sh"
GOC=$("$PGTE_ROOT/interop/go-consumer/build.sh") || fail "go consumer build"
rl_setup partitioner
kafka_create_topics keys6:6 keys6-dapr:6 >>"$WORK/kafka-start.log" 2>&1 || fail "topics not created"

export LC_ALL=C
# 200 keys: user1.., plain numbers, UUIDs, non-ASCII; one custom event each
q -d "$DB" -c "SELECT count(taskevents.publish('keys6', 'partition.probe', jsonb_build_object('n', i), k))
               FROM generate_series(1, 200) i,
                    LATERAL (SELECT CASE i % 4 WHEN 0 THEN 'user' || i WHEN 1 THEN i::text
                                    WHEN 2 THEN md5(i::text)::uuid::text ELSE 'usér-' || i END) AS t(k)" >/dev/null
q -d "$DB" -c "SELECT partition_key FROM taskevents.outbox_events WHERE topic = 'keys6' ORDER BY id" >"$WORK/keys.txt"
[ "$(sort -u "$WORK/keys.txt" | wc -l)" -eq 200 ] || fail "200 distinct keys"

# records TOPIC: key<TAB>partition<TAB>offset of every record in TOPIC
records() { kcat -b "$KAFKA_BROKER" -C -t "$1" -o beginning -e -q -J 2>/dev/null | jq -r '[.key, .partition, .offset] | @tsv'; }
# new_since OLD NEW: key<TAB>partition of the records in NEW that are not in OLD
new_since() { awk -F'\t' 'FILENAME == ARGV[1] { seen[$2 ":" $3] = 1; next } !seen[$2 ":" $3] { print $1 "\t" $2 }' "$1" "$2" | sort; }

rl_once relay --consumer default-partitioner || fail "relay failed"
: >"$WORK/none.tsv"
records keys6 >"$WORK/run1.tsv"
new_since "$WORK/none.tsv" "$WORK/run1.tsv" >"$WORK/relay.tsv"
[ "$(wc -l <"$WORK/relay.tsv")" -eq 200 ] || fail "relay wrote $(wc -l <"$WORK/relay.tsv") of 200 records"
"$GOC" produce -brokers "$KAFKA_BROKER" -topic keys6-dapr -keys "$WORK/keys.txt" 2>"$WORK/goc.log" | sort >"$WORK/sarama.tsv" \
  || fail "sarama producer: $(tail -3 "$WORK/goc.log")"
[ "$(wc -l <"$WORK/sarama.tsv")" -eq 200 ] || fail "sarama wrote $(wc -l <"$WORK/sarama.tsv") of 200 records"
# the Sarama side's partitions as the broker stored them, not as the producer said
records keys6-dapr | cut -f1,2 | sort >"$WORK/sarama-stored.tsv"
diff -q "$WORK/sarama.tsv" "$WORK/sarama-stored.tsv" >/dev/null || fail "sarama's reported partitions differ from the broker's"
used=$(cut -f2 "$WORK/relay.tsv" | sort -u | wc -l)
[ "$used" -eq 6 ] || fail "200 keys used only $used of 6 partitions"
if ! diff "$WORK/sarama.tsv" "$WORK/relay.tsv" >"$WORK/diff.txt"; then
  fail "$(grep -c '^>' "$WORK/diff.txt") of 200 keys on a different partition than Sarama/Dapr: $(head -4 "$WORK/diff.txt" | tr '\n' ' ')"
fi
pass "200 keys: relay (default fnv1a_random) and Sarama's default partitioner (Dapr) agree on every partition, all 6 used"

# the Java-compatible hashing does not match Sarama: the test can tell
rl_once relay-murmur --consumer murmur -X partitioner=murmur2_random || fail "relay (murmur2) failed"
records keys6 >"$WORK/run2.tsv"
new_since "$WORK/run1.tsv" "$WORK/run2.tsv" >"$WORK/murmur.tsv"
[ "$(wc -l <"$WORK/murmur.tsv")" -eq 200 ] || fail "murmur2 relay wrote $(wc -l <"$WORK/murmur.tsv") of 200 records"
same=$(join -t $'\t' "$WORK/sarama.tsv" "$WORK/murmur.tsv" | awk -F'\t' '$2 == $3' | wc -l)
[ "$same" -lt 100 ] || fail "murmur2_random agreed with Sarama on $same of 200 keys: the comparison proves nothing"
pass "murmur2_random (Java client hashing) agrees with Sarama on only $same of 200 keys"
