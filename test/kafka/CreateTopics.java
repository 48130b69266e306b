// test/kafka/CreateTopics.java: create Kafka topics idempotently in one JVM (an existing topic is fine),
// then wait until every partition of every named topic has a leader in the broker's metadata.
// Usage: java -cp CLASSPATH CreateTopics BOOTSTRAP name[:partitions] ...   (replication factor 1)
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CreateTopics BOOTSTRAP name[:partitions] ...");
            System.exit(2);
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.getLong("timeout.s", 60));
        Map<String, Integer> want = new LinkedHashMap<>();
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] s = args[i].split(":", 2);
            int n = s.length > 1 ? Integer.parseInt(s[1]) : 1;
            want.put(s[0], n);
            topics.add(new NewTopic(s[0], n, (short) 1));
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        try (Admin admin = Admin.create(p)) {
            for (Map.Entry<String, KafkaFuture<Void>> e : admin.createTopics(topics).values().entrySet()) {
                try {
                    e.getValue().get();
                    System.out.println("created " + e.getKey() + " partitions=" + want.get(e.getKey()));
                } catch (ExecutionException ex) {
                    if (!(ex.getCause() instanceof TopicExistsException)) throw ex;
                    System.out.println("exists  " + e.getKey());
                }
            }
            while (true) {
                try {
                    Map<String, TopicDescription> d = admin.describeTopics(want.keySet()).allTopicNames().get();
                    boolean ready = true;
                    for (TopicDescription t : d.values())
                        for (TopicPartitionInfo pi : t.partitions())
                            if (pi.leader() == null || pi.leader().isEmpty()) ready = false;
                    if (ready) {
                        for (TopicDescription t : d.values())
                            if (t.partitions().size() != want.get(t.name()))
                                System.err.println("warning: topic " + t.name() + " has "
                                        + t.partitions().size() + " partitions, not " + want.get(t.name()));
                        return;
                    }
                } catch (ExecutionException ex) {
                    if (!(ex.getCause() instanceof UnknownTopicOrPartitionException)) throw ex;
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("CreateTopics: timed out waiting for topic leaders");
                    System.exit(1);
                }
                Thread.sleep(100);
            }
        }
    }
}
