// The messages a master leaves in a shared JDBC database for its slave: `produce` sends
// persistent messages of several kinds to a queue and to a topic with a durable subscription,
// and consumes (acknowledges) the first few of each; `consume` finds exactly the rest, in
// order, once each, with their properties and bodies. Run `produce` against one broker and
// `consume` against the other after the first was killed.
// Usage: JdbcShare PORT produce|consume. Exit status 0 when all is as expected.

import java.util.ArrayList;
import java.util.List;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class JdbcShare {
    static final String CLIENT_ID = "jdbc-share";
    static final String SUB = "share-sub";
    static final int QUEUED = 10, QUEUE_ACKED = 3;
    static final int PUBLISHED = 10, TOPIC_ACKED = 4;

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {
            // Exit rather than leave the client's non-daemon threads running.
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void run(String[] args) throws Exception {
        // admin/admin: this broker's default user; ActiveMQ here has no authentication.
        ActiveMQConnectionFactory f =
            new ActiveMQConnectionFactory("admin", "admin", "tcp://127.0.0.1:" + args[0]);
        Connection c = f.createConnection();
        c.setClientID(CLIENT_ID);
        c.start();
        try {
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            Queue queue = s.createQueue("share.queue");
            Topic topic = s.createTopic("share.topic");
            if (args[1].equals("produce")) {
                produce(s, queue, topic);
            } else {
                consume(s, queue, topic);
            }
        } finally {
            c.close();
        }
        System.out.println(args[1] + " ok");
    }

    /// Message `i` of a destination: a text, bytes or map message by turn, with properties.
    static Message make(Session s, String what, int i) throws JMSException {
        Message m;
        switch (i % 3) {
            case 0:
                m = s.createTextMessage(what + "-" + i);
                break;
            case 1: {
                BytesMessage b = s.createBytesMessage();
                b.writeBytes((what + "-" + i).getBytes(java.nio.charset.StandardCharsets.UTF_8));
                m = b;
                break;
            }
            default: {
                MapMessage map = s.createMapMessage();
                map.setString("body", what + "-" + i);
                map.setInt("n", i);
                m = map;
            }
        }
        m.setIntProperty("n", i);
        m.setStringProperty("what", what);
        m.setJMSCorrelationID("corr-" + i);
        return m;
    }

    static String body(Message m) throws JMSException {
        if (m instanceof TextMessage) {
            return ((TextMessage) m).getText();
        }
        if (m instanceof BytesMessage) {
            BytesMessage b = (BytesMessage) m;
            byte[] data = new byte[(int) b.getBodyLength()];
            b.readBytes(data);
            return new String(data, java.nio.charset.StandardCharsets.UTF_8);
        }
        if (m instanceof MapMessage) {
            return ((MapMessage) m).getString("body");
        }
        return "?" + m.getClass().getName();
    }

    static void produce(Session s, Queue queue, Topic topic) throws JMSException {
        // The durable subscription exists before anything is published to the topic.
        s.createDurableSubscriber(topic, SUB).close();
        MessageProducer p = s.createProducer(null);
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = 0; i < QUEUED; i++) {
            p.send(queue, make(s, "q", i));
        }
        for (int i = 0; i < PUBLISHED; i++) {
            p.send(topic, make(s, "t", i));
        }
        take(s.createConsumer(queue), "q", 0, QUEUE_ACKED, false);
        take(s.createDurableSubscriber(topic, SUB), "t", 0, TOPIC_ACKED, false);
    }

    static void consume(Session s, Queue queue, Topic topic) throws JMSException {
        take(s.createConsumer(queue), "q", QUEUE_ACKED, QUEUED, true);
        take(s.createDurableSubscriber(topic, SUB), "t", TOPIC_ACKED, PUBLISHED, true);
    }

    /// Receives messages `from` to `to` (exclusive) of `what` in order, acknowledging each; with
    /// `nothing_more`, also checks that no other message follows.
    static void take(MessageConsumer consumer, String what, int from, int to, boolean nothingMore)
            throws JMSException {
        List<String> got = new ArrayList<>();
        for (int i = from; i < to; i++) {
            Message m = consumer.receive(15000);
            if (m == null) {
                throw new java.lang.IllegalStateException(what + ": expected " + what + "-" + i
                    + " but nothing came; got " + got);
            }
            String b = body(m);
            got.add(b);
            if (!b.equals(what + "-" + i)
                    || m.getIntProperty("n") != i
                    || !what.equals(m.getStringProperty("what"))
                    || !("corr-" + i).equals(m.getJMSCorrelationID())
                    || m.getJMSDeliveryMode() != DeliveryMode.PERSISTENT) {
                throw new java.lang.IllegalStateException(what + ": expected " + what + "-" + i
                    + " with its properties, got " + b + " n=" + m.getObjectProperty("n")
                    + " what=" + m.getStringProperty("what") + " corr="
                    + m.getJMSCorrelationID() + " after " + got);
            }
            m.acknowledge();
        }
        if (nothingMore) {
            Message extra = consumer.receive(2000);
            if (extra != null) {
                throw new java.lang.IllegalStateException(what + ": one too many: " + body(extra)
                    + " after " + got);
            }
        }
        System.out.println(what + " " + got);
        consumer.close();
    }
}
