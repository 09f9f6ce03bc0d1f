// A JMS load generator for the OpenWire comparison (benches/compare-openwire.sh): the stock
// ActiveMQ 5.17 client, as a Java application would use it, against any broker URL. Every
// message is a persistent BytesMessage of `size` bytes. Prints one line
// `RESULT msgs_per_sec=R elapsed_s=E count=N` (and `all_s=` for the topic row).
//
//   java -cp <activemq client jars>:. JmsLoad produce tcp://127.0.0.1:61616 queue.a 20000 producers=8
//   java ... JmsLoad produce URL queue.a 20000 tx_batch=100       # transacted, commit per 100
//   java ... JmsLoad consume URL queue.a 20000 ack=client          # auto | client | individual | dups
//   java ... JmsLoad topic URL topic.t 5000 subscribers=4          # durable subscribers + 1 publisher
//
// Sends are the client's defaults: a persistent send outside a transaction is synchronous (it
// waits for the broker's Response, so for the disk), as in ActiveMQ's client unless
// useAsyncSend is set. Each producer and each consumer has its own connection, as separate
// applications would.

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import javax.jms.BytesMessage;
import javax.jms.Connection;
import javax.jms.DeliveryMode;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.Session;
import javax.jms.Topic;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQSession;

public final class JmsLoad {
    /** The longest any one row may take: a stuck broker ends the run instead of hanging it. */
    private static final long DEADLINE_MS = 300_000;

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: JmsLoad produce|consume|topic URL DESTINATION COUNT [key=value]...");
            System.exit(2);
        }
        String mode = args[0];
        String url = args[1];
        String dest = args[2];
        int count = Integer.parseInt(args[3]);
        Map<String, String> opt = new HashMap<>();
        for (int i = 4; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            if (kv.length != 2) {
                throw new IllegalArgumentException("expected key=value, got " + args[i]);
            }
            opt.put(kv[0], kv[1]);
        }
        int size = Integer.parseInt(opt.getOrDefault("size", "1024"));
        ActiveMQConnectionFactory factory = new ActiveMQConnectionFactory(
                opt.getOrDefault("user", "admin"), opt.getOrDefault("password", "admin"), url);
        switch (mode) {
            case "produce":
                produce(factory, dest, count, size,
                        Integer.parseInt(opt.getOrDefault("producers", "1")),
                        Integer.parseInt(opt.getOrDefault("tx_batch", "0")));
                break;
            case "consume":
                consume(factory, dest, count, opt.getOrDefault("ack", "auto"));
                break;
            case "topic":
                topic(factory, dest, count, size, Integer.parseInt(opt.getOrDefault("subscribers", "4")));
                break;
            default:
                throw new IllegalArgumentException("unknown mode " + mode);
        }
    }

    private static BytesMessage body(Session session, int size) throws Exception {
        BytesMessage m = session.createBytesMessage();
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) {
            b[i] = (byte) ('a' + i % 26);
        }
        m.writeBytes(b);
        return m;
    }

    /** `producers` connections share `count` messages; with `txBatch` > 0 each commits per batch. */
    private static void produce(ActiveMQConnectionFactory factory, String dest, int count, int size,
                                int producers, int txBatch) throws Exception {
        List<Thread> threads = new ArrayList<>();
        AtomicReference<Exception> failed = new AtomicReference<>();
        CountDownLatch ready = new CountDownLatch(producers);
        CountDownLatch go = new CountDownLatch(1);
        for (int p = 0; p < producers; p++) {
            int mine = count / producers + (p < count % producers ? 1 : 0);
            Thread t = new Thread(() -> {
                try (Connection c = factory.createConnection()) {
                    c.start();
                    boolean tx = txBatch > 0;
                    Session s = c.createSession(tx, tx ? Session.SESSION_TRANSACTED : Session.AUTO_ACKNOWLEDGE);
                    MessageProducer prod = s.createProducer(s.createQueue(dest));
                    prod.setDeliveryMode(DeliveryMode.PERSISTENT);
                    BytesMessage m = body(s, size);
                    ready.countDown();
                    go.await();
                    for (int i = 1; i <= mine; i++) {
                        prod.send(m);
                        if (tx && (i % txBatch == 0 || i == mine)) {
                            s.commit();
                        }
                    }
                } catch (Exception e) {
                    failed.compareAndSet(null, e);
                    ready.countDown();
                }
            });
            threads.add(t);
            t.start();
        }
        ready.await();
        long t0 = System.nanoTime();
        go.countDown();
        for (Thread t : threads) {
            t.join(DEADLINE_MS);
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (failed.get() != null) {
            throw failed.get();
        }
        System.out.printf("RESULT msgs_per_sec=%.0f elapsed_s=%.3f count=%d%n", count / secs, secs, count);
    }

    /** One consumer drains `count` messages with the given acknowledge mode. */
    private static void consume(ActiveMQConnectionFactory factory, String dest, int count, String ack)
            throws Exception {
        int mode;
        switch (ack) {
            case "auto": mode = Session.AUTO_ACKNOWLEDGE; break;
            case "client": mode = Session.CLIENT_ACKNOWLEDGE; break;
            case "dups": mode = Session.DUPS_OK_ACKNOWLEDGE; break;
            case "individual": mode = ActiveMQSession.INDIVIDUAL_ACKNOWLEDGE; break;
            default: throw new IllegalArgumentException("ack must be auto|client|dups|individual");
        }
        try (Connection c = factory.createConnection()) {
            c.start();
            Session s = c.createSession(false, mode);
            MessageConsumer consumer = s.createConsumer(s.createQueue(dest));
            long t0 = System.nanoTime();
            long deadline = System.currentTimeMillis() + DEADLINE_MS;
            int got = 0;
            while (got < count && System.currentTimeMillis() < deadline) {
                Message m = consumer.receive(10_000);
                if (m == null) {
                    break;
                }
                got++;
                if (mode == Session.CLIENT_ACKNOWLEDGE || mode == ActiveMQSession.INDIVIDUAL_ACKNOWLEDGE) {
                    m.acknowledge();
                }
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            if (got < count) {
                throw new IllegalStateException("received " + got + " of " + count);
            }
            System.out.printf("RESULT msgs_per_sec=%.0f elapsed_s=%.3f count=%d%n", got / secs, secs, got);
        }
    }

    /**
     * `subscribers` durable subscribers (each its own connection and client id) receive while one
     * publisher sends `count`; reports the publish rate and the seconds until all have all.
     */
    private static void topic(ActiveMQConnectionFactory factory, String dest, int count, int size,
                              int subscribers) throws Exception {
        String run = Long.toString(System.nanoTime(), 36);
        CountDownLatch subscribed = new CountDownLatch(subscribers);
        CountDownLatch done = new CountDownLatch(subscribers);
        AtomicReference<Exception> failed = new AtomicReference<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < subscribers; i++) {
            String id = "load-" + run + "-" + i;
            Thread t = new Thread(() -> {
                try (Connection c = factory.createConnection()) {
                    c.setClientID(id);
                    c.start();
                    Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                    Topic topic = s.createTopic(dest);
                    MessageConsumer sub = s.createDurableSubscriber(topic, "sub");
                    subscribed.countDown();
                    int got = 0;
                    long deadline = System.currentTimeMillis() + DEADLINE_MS;
                    while (got < count && System.currentTimeMillis() < deadline) {
                        if (sub.receive(10_000) == null) {
                            break;
                        }
                        got++;
                    }
                    if (got < count) {
                        throw new IllegalStateException(id + " received " + got + " of " + count);
                    }
                    sub.close();
                    s.unsubscribe("sub");
                } catch (Exception e) {
                    failed.compareAndSet(null, e);
                    subscribed.countDown();
                } finally {
                    done.countDown();
                }
            });
            threads.add(t);
            t.start();
        }
        subscribed.await();
        double pubSecs;
        long t0 = System.nanoTime();
        try (Connection c = factory.createConnection()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer prod = s.createProducer(s.createTopic(dest));
            prod.setDeliveryMode(DeliveryMode.PERSISTENT);
            BytesMessage m = body(s, size);
            for (int i = 0; i < count; i++) {
                prod.send(m);
            }
            pubSecs = (System.nanoTime() - t0) / 1e9;
        }
        done.await(DEADLINE_MS, TimeUnit.MILLISECONDS);
        double allSecs = (System.nanoTime() - t0) / 1e9;
        if (failed.get() != null) {
            throw failed.get();
        }
        System.out.printf("RESULT msgs_per_sec=%.0f elapsed_s=%.3f count=%d all_s=%.3f%n",
                count / pubSecs, pubSecs, count, allSecs);
    }
}
