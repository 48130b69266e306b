// Command go-consumer is the interop example for pg_taskevents: a Kafka
// consumer in Go that reads the relay's records with the official
// CloudEvents SDK (github.com/cloudevents/sdk-go/v2) and its Sarama protocol
// binding, the same Kafka client Dapr's pub/sub component is built on.
//
//	go-consumer consume -brokers HOST:PORT -topics tasks,reminders
//	    Reads every partition of the topics from the beginning up to the end
//	    offsets seen at start, turns each record into a CloudEvent with the
//	    SDK (structured or binary content mode, whichever the record is in),
//	    validates it and prints one JSON line per event.  Exit 1 if any
//	    record is not a valid CloudEvent.
//
//	go-consumer produce -brokers HOST:PORT -topic T [-keys FILE]
//	    Produces one record per key (one key a line, stdin by default) with
//	    Sarama's default hash partitioner, the one Dapr's Kafka pub/sub uses
//	    (sarama.NewHashPartitioner: FNV-1a), and prints "key<TAB>partition".
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
)

// record is what consume prints for each Kafka record.
type record struct {
	Topic           string                 `json:"topic"`
	Partition       int32                  `json:"partition"`
	Offset          int64                  `json:"offset"`
	Key             string                 `json:"key"`
	Encoding        string                 `json:"encoding"`
	SpecVersion     string                 `json:"specversion"`
	ID              string                 `json:"id"`
	Source          string                 `json:"source"`
	Type            string                 `json:"type"`
	Subject         string                 `json:"subject"`
	Time            string                 `json:"time"`
	DataContentType string                 `json:"datacontenttype"`
	Extensions      map[string]interface{} `json:"extensions"`
	Data            json.RawMessage        `json:"data"`
	Error           string                 `json:"error,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-consumer consume|produce [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "consume":
		err = consume(os.Args[2:])
	case "produce":
		err = produce(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
		os.Exit(1)
	}
}

func consume(args []string) error {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap servers, comma separated")
	topics := fs.String("topics", "tasks,reminders", "topics, comma separated")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	_ = fs.Parse(args)

	conf := sarama.NewConfig()
	conf.ClientID = "taskevents-go-consumer"
	conf.Consumer.Return.Errors = true
	client, err := sarama.NewClient(strings.Split(*brokers, ","), conf)
	if err != nil {
		return err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()

	ctx := context.Background()
	deadline := time.After(*timeout)
	out := json.NewEncoder(os.Stdout)
	bad := 0
	for _, topic := range strings.Split(*topics, ",") {
		parts, err := client.Partitions(topic)
		if err != nil {
			return fmt.Errorf("%s: %w", topic, err)
		}
		for _, p := range parts {
			end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return err
			}
			start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
			if err != nil {
				return err
			}
			if start >= end {
				continue
			}
			pc, err := consumer.ConsumePartition(topic, p, start)
			if err != nil {
				return err
			}
			for done := false; !done; {
				select {
				case cm := <-pc.Messages():
					r := decode(ctx, cm)
					if r.Error != "" {
						bad++
					}
					if err := out.Encode(r); err != nil {
						return err
					}
					done = cm.Offset+1 >= end
				case cerr := <-pc.Errors():
					pc.Close()
					return cerr
				case <-deadline:
					pc.Close()
					return fmt.Errorf("timeout reading %s/%d", topic, p)
				}
			}
			pc.Close()
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d records are not valid CloudEvents", bad)
	}
	return nil
}

// decode turns one Kafka record into a CloudEvent with the SDK's Sarama
// binding: it recognises structured mode by the content-type header
// application/cloudevents+json and binary mode by the ce_* headers.
func decode(ctx context.Context, cm *sarama.ConsumerMessage) record {
	r := record{Topic: cm.Topic, Partition: cm.Partition, Offset: cm.Offset, Key: string(cm.Key)}
	msg := kafka_sarama.NewMessageFromConsumerMessage(cm)
	switch msg.ReadEncoding() {
	case binding.EncodingStructured:
		r.Encoding = "structured"
	case binding.EncodingBinary:
		r.Encoding = "binary"
	default:
		r.Encoding = "unknown"
		r.Error = "neither structured nor binary CloudEvent"
		return r
	}
	ev, err := binding.ToEvent(ctx, msg)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if err := ev.Validate(); err != nil {
		r.Error = err.Error()
	}
	r.SpecVersion = ev.SpecVersion()
	r.ID = ev.ID()
	r.Source = ev.Source()
	r.Type = ev.Type()
	r.Subject = ev.Subject()
	if !ev.Time().IsZero() {
		r.Time = ev.Time().UTC().Format(time.RFC3339Nano)
	}
	r.DataContentType = ev.DataContentType()
	r.Extensions = map[string]interface{}{}
	for k, v := range ev.Extensions() {
		// the binding adds where the record came from; keep only the event's own
		if strings.HasPrefix(k, "kafka") {
			continue
		}
		r.Extensions[k] = v
	}
	var data interface{}
	if err := ev.DataAs(&data); err != nil {
		r.Error = "data: " + err.Error()
	} else {
		r.Data, _ = json.Marshal(data)
	}
	return r
}

func produce(args []string) error {
	fs := flag.NewFlagSet("produce", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap servers, comma separated")
	topic := fs.String("topic", "", "topic")
	keys := fs.String("keys", "-", "file with one key a line, - for stdin")
	_ = fs.Parse(args)

	var in io.Reader = os.Stdin
	if *keys != "-" {
		f, err := os.Open(*keys)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	// Sarama's defaults, as Dapr's Kafka pub/sub builds its producer: the
	// partitioner is sarama.NewHashPartitioner (FNV-1a, negative results
	// made positive); Dapr wraps it only to honour an explicit
	// partitionNumber.
	conf := sarama.NewConfig()
	conf.ClientID = "taskevents-go-producer"
	conf.Producer.Return.Successes = true
	conf.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer(strings.Split(*brokers, ","), conf)
	if err != nil {
		return err
	}
	defer prod.Close()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		k := sc.Text()
		if k == "" {
			continue
		}
		p, _, err := prod.SendMessage(&sarama.ProducerMessage{
			Topic: *topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder("{}"),
		})
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		fmt.Printf("%s\t%d\n", k, p)
	}
	return sc.Err()
}
