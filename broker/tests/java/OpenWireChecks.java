// Drives the stock ActiveMQ JMS client (activemq-client) against the broker under test.
// Usage: java OpenWireChecks <port> <check>; exits 0 when the check passes, prints why not.
import java.util.Arrays;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class OpenWireChecks {
    static String url;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Connection connect(String extra) throws JMSException {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("admin", "admin", url + extra);
        Connection c = f.createConnection();
        c.start();
        return c;
    }

    /// A consumer closed with prefetched messages its application never saw: those come back
    /// as they were (not redelivered), the ones it saw and did not ack come back redelivered.
    static void unseenPrefetch() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.unseen");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 10; i++) p.send(s.createTextMessage("m" + i));
        MessageConsumer first = s.createConsumer(q);
        for (int i = 0; i < 2; i++) {
            Message m = first.receive(5000);
            check(m != null && !m.getJMSRedelivered(), "first sight of m" + i);
        }
        // Give the prefetch time to fill: the other eight are at the client, unseen.
        Thread.sleep(500);
        first.close();
        MessageConsumer second = s.createConsumer(q);
        for (int i = 0; i < 10; i++) {
            TextMessage m = (TextMessage) second.receive(5000);
            check(m != null && m.getText().equals("m" + i), "m" + i + " again, got " + m);
            check(m.getJMSRedelivered() == (i < 2),
                  "m" + i + " redelivered " + m.getJMSRedelivered() + ", count " + m.getIntProperty("JMSXDeliveryCount"));
            m.acknowledge();
        }
        c.close();
    }

    /// The JMSMessageID a producer saw after send is the one its consumer gets, so the
    /// request/reply idiom that correlates on it (the replier sets JMSCorrelationID to the
    /// request's JMSMessageID, the requester selects on it) works as on ActiveMQ.
    static void messageId() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue requests = s.createQueue("ow.msgid.requests");
        Queue replies = s.createQueue("ow.msgid.replies");
        MessageProducer p = s.createProducer(requests);
        TextMessage sent = s.createTextMessage("question");
        p.send(sent);
        String id = sent.getJMSMessageID();
        check(id != null && id.startsWith("ID:"), "an id after send: " + id);
        Message got = s.createConsumer(requests).receive(5000);
        check(got != null, "the request arrives");
        check(id.equals(got.getJMSMessageID()), "sent as " + id + ", received as " + got.getJMSMessageID());
        // The replier answers another request first: the selector must pick the right one.
        MessageProducer replier = s.createProducer(replies);
        TextMessage other = s.createTextMessage("not yours");
        other.setJMSCorrelationID("ID:someone-else:1:1:1:1");
        replier.send(other);
        TextMessage answer = s.createTextMessage("answer");
        answer.setJMSCorrelationID(got.getJMSMessageID());
        replier.send(answer);
        MessageConsumer mine = s.createConsumer(replies, "JMSCorrelationID = '" + id + "'");
        Message reply = mine.receive(5000);
        check(reply instanceof TextMessage && "answer".equals(((TextMessage) reply).getText()),
              "the reply correlated on the request's id: " + reply);
        c.close();
    }

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable t) {
            // The client's own threads would keep a failed JVM alive: exit explicitly.
            t.printStackTrace();
            System.exit(1);
        }
    }

    static void run(String[] args) throws Exception {
        url = args[0].contains("://") ? args[0] : "tcp://127.0.0.1:" + args[0];
        String check = args[1];
        switch (check) {
            case "auto": auto(); break;
            case "client": client(); break;
            case "transacted": transacted(); break;
            case "poison": poison(); break;
            case "listener": listener(); break;
            case "bad-password": badPassword(); break;
            case "async-burst": asyncBurst(); break;
            case "types": types(); break;
            case "selector": selector(); break;
            case "big-selector": bigSelector(); break;
            case "durable": durable(); break;
            case "more-types": moreTypes(); break;
            case "individual": individual(); break;
            case "keepalive": keepalive(); break;
            case "refusals": refusals(); break;
            case "prefetch0": prefetch0(); break;
            case "consumer-cap": consumerCap(); break;
            case "from-stomp": fromStomp(); break;
            case "to-stomp": toStomp(); break;
            case "destinations": destinations(); break;
            case "not-authorized": notAuthorized(); break;
            case "advisories": advisories(); break;
            case "message-id": messageId(); break;
            case "unseen-prefetch": unseenPrefetch(); break;
            case "durable-before-restart": durableBeforeRestart(); break;
            case "durable-after-restart": durableAfterRestart(); break;
            default: throw new IllegalArgumentException(check);
        }
        System.out.println("ok " + check);
        System.exit(0);
    }

    static void auto() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.auto");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 10; i++) p.send(s.createTextMessage("m" + i));
        MessageConsumer mc = s.createConsumer(q);
        for (int i = 0; i < 10; i++) {
            TextMessage m = (TextMessage) mc.receive(10000);
            check(m != null, "message " + i + " received");
            check(m.getText().equals("m" + i), "in order: " + m.getText());
            check(!m.getJMSRedelivered(), "not redelivered");
        }
        check(mc.receive(300) == null, "nothing more");
        c.close();
    }

    static void client() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.client");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 4; i++) p.send(s.createTextMessage("c" + i));
        MessageConsumer mc = s.createConsumer(q);
        Message first = mc.receive(10000);
        Message second = mc.receive(10000);
        check(second != null, "two received");
        second.acknowledge(); // acks c0 and c1
        Message third = mc.receive(10000);
        check(((TextMessage) third).getText().equals("c2"), "third is c2");
        s.close(); // c2 and c3 unacked: they come back
        Session s2 = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        MessageConsumer mc2 = s2.createConsumer(q);
        TextMessage again = (TextMessage) mc2.receive(10000);
        check(again != null && again.getText().equals("c2"), "c2 back: " + again);
        check(again.getJMSRedelivered(), "c2 redelivered");
        TextMessage last = (TextMessage) mc2.receive(10000);
        check(last != null && last.getText().equals("c3"), "c3 back");
        last.acknowledge();
        check(mc2.receive(300) == null, "nothing more");
        c.close();
    }

    static void transacted() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(true, Session.SESSION_TRANSACTED);
        Queue q = s.createQueue("ow.tx");
        MessageProducer p = s.createProducer(q);
        p.send(s.createTextMessage("t1"));
        p.send(s.createTextMessage("t2"));
        MessageConsumer mc = s.createConsumer(q);
        check(mc.receive(300) == null, "nothing before commit");
        s.commit();
        TextMessage a = (TextMessage) mc.receive(10000);
        check(a != null && a.getText().equals("t1"), "t1 after commit");
        s.rollback();
        TextMessage b = (TextMessage) mc.receive(10000);
        check(b != null && b.getText().equals("t1"), "t1 again after rollback");
        check(b.getJMSRedelivered(), "t1 redelivered");
        TextMessage b2 = (TextMessage) mc.receive(10000);
        check(b2 != null && b2.getText().equals("t2"), "t2");
        s.commit();
        c.close();
        // Committed consumption: nothing left for a new connection.
        Connection c2 = connect("");
        Session s2 = c2.createSession(false, Session.AUTO_ACKNOWLEDGE);
        check(s2.createConsumer(s2.createQueue("ow.tx")).receive(500) == null, "queue empty");
        c2.close();
    }

    /// The client's redelivery policy gives up (maximumRedeliveries=1: the second rollback) and
    /// sends a poison ack: the message is in ActiveMQ.DLQ at once, with the client's cause, not
    /// redelivered again until the broker's own maximum (6) is reached.
    static void poison() throws Exception {
        Connection c = connect("?jms.redeliveryPolicy.maximumRedeliveries=1"
            + "&jms.redeliveryPolicy.initialRedeliveryDelay=0");
        Session s = c.createSession(true, Session.SESSION_TRANSACTED);
        Queue q = s.createQueue("ow.poison");
        MessageProducer p = s.createProducer(q);
        p.send(s.createTextMessage("bad"));
        p.send(s.createTextMessage("good"));
        s.commit();
        MessageConsumer mc = s.createConsumer(q);
        for (int attempt = 0; attempt < 2; attempt++) {
            TextMessage m = (TextMessage) mc.receive(10000);
            check(m != null && m.getText().equals("bad"), "attempt " + attempt + ": " + m);
            s.rollback();
        }
        // The client gave up on "bad": the next message is "good".
        TextMessage next = (TextMessage) mc.receive(10000);
        check(next != null && next.getText().equals("good"), "good next: " + next);
        s.commit();
        c.close();
        Connection c2 = connect("");
        Session s2 = c2.createSession(false, Session.AUTO_ACKNOWLEDGE);
        TextMessage dead = (TextMessage) s2.createConsumer(s2.createQueue("ActiveMQ.DLQ")).receive(10000);
        check(dead != null && dead.getText().equals("bad"), "bad in the DLQ: " + dead);
        String cause = dead.getStringProperty("dlqDeliveryFailureCause");
        check(cause != null && cause.contains("redelivery policy"), "the client's cause: " + cause);
        check(s2.createConsumer(q).receive(500) == null, "nothing left in ow.poison");
        c2.close();
    }

    static void listener() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Topic t = s.createTopic("ow.topic");
        final java.util.concurrent.CountDownLatch got = new java.util.concurrent.CountDownLatch(5);
        s.createConsumer(t).setMessageListener(m -> got.countDown());
        Session ps = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = ps.createProducer(t);
        for (int i = 0; i < 5; i++) p.send(ps.createTextMessage("e" + i));
        check(got.await(10, java.util.concurrent.TimeUnit.SECONDS), "listener got all five");
        c.close();
    }

    static void badPassword() throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("admin", "wrong", url);
        try {
            Connection c = f.createConnection();
            c.start();
            throw new AssertionError("connected with a bad password");
        } catch (JMSSecurityException e) {
            // expected
        }
    }

    // [[authorization]]: user app may write to orders.in but not to secret; the refusal is
    // ActiveMQ's java.lang.SecurityException, which the client raises as a
    // JMSSecurityException naming the user, the operation and the destination.
    /** The next advisory on `watch` whose data structure is a `type`, within ten seconds. */
    static org.apache.activemq.command.ActiveMQMessage advisory(MessageConsumer watch, Class<?> type,
            String about) throws Exception {
        long deadline = System.currentTimeMillis() + 10000;
        while (System.currentTimeMillis() < deadline) {
            Message m = watch.receive(1000);
            if (m == null) continue;
            org.apache.activemq.command.ActiveMQMessage a = (org.apache.activemq.command.ActiveMQMessage) m;
            check("Advisory".equals(a.getJMSType()), "JMSType Advisory: " + a.getJMSType());
            if (type.isInstance(a.getDataStructure())) return a;
        }
        throw new AssertionError("no " + type.getSimpleName() + " advisory " + about);
    }

    /** ActiveMQ's advisory topics, as AdvisorySupport users read them: commands and counts. */
    static void advisories() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.advised");
        MessageConsumer consumers = s.createConsumer(
                org.apache.activemq.advisory.AdvisorySupport.getConsumerAdvisoryTopic(q));
        MessageConsumer producers = s.createConsumer(
                org.apache.activemq.advisory.AdvisorySupport.getProducerAdvisoryTopic(q));
        MessageConsumer queues = s.createConsumer(
                org.apache.activemq.advisory.AdvisorySupport.QUEUE_ADVISORY_TOPIC);

        Connection other = connect("");
        Session os = other.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer mc = os.createConsumer(q);
        org.apache.activemq.command.ActiveMQMessage a =
                advisory(consumers, org.apache.activemq.command.ConsumerInfo.class, "for a new consumer");
        org.apache.activemq.command.ConsumerInfo ci = (org.apache.activemq.command.ConsumerInfo) a.getDataStructure();
        check(ci.getDestination().getPhysicalName().equals("ow.advised"), "consumer's destination " + ci.getDestination());
        check(a.getIntProperty("consumerCount") == 1, "consumerCount 1: " + a.getIntProperty("consumerCount"));
        mc.close();
        a = advisory(consumers, org.apache.activemq.command.RemoveInfo.class, "for a closed consumer");
        check(a.getIntProperty("consumerCount") == 0, "consumerCount 0: " + a.getIntProperty("consumerCount"));

        MessageProducer p = os.createProducer(q);
        a = advisory(producers, org.apache.activemq.command.ProducerInfo.class, "for a new producer");
        check(a.getIntProperty("producerCount") == 1, "producerCount 1: " + a.getIntProperty("producerCount"));
        p.close();
        advisory(producers, org.apache.activemq.command.RemoveInfo.class, "for a closed producer");

        os.createProducer(os.createQueue("ow.advised.created")).send(os.createTextMessage("x"));
        long deadline = System.currentTimeMillis() + 10000;
        boolean seen = false;
        while (!seen && System.currentTimeMillis() < deadline) {
            a = advisory(queues, org.apache.activemq.command.DestinationInfo.class, "for a new queue");
            org.apache.activemq.command.DestinationInfo di = (org.apache.activemq.command.DestinationInfo) a.getDataStructure();
            seen = di.getDestination().getPhysicalName().equals("ow.advised.created") && di.isAddOperation();
        }
        check(seen, "a DestinationInfo ADD for ow.advised.created");
        other.close();
        c.close();
    }

    static void notAuthorized() throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("app", "apppw", url);
        Connection c = f.createConnection();
        c.start();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        s.createProducer(s.createQueue("orders.in")).send(s.createTextMessage("allowed"));
        JMSSecurityException refused = null;
        try {
            MessageProducer p = s.createProducer(s.createQueue("secret"));
            p.send(s.createTextMessage("refused"));
        } catch (JMSSecurityException e) {
            refused = e;
        }
        check(refused != null, "a send to secret raises JMSSecurityException");
        check(String.valueOf(refused.getMessage()).contains("User app is not authorized to write to: queue://secret"),
            "names user, operation and destination: " + refused.getMessage());
        refused = null;
        try {
            s.createConsumer(s.createQueue("secret"));
        } catch (JMSSecurityException e) {
            refused = e;
        }
        check(refused != null, "a consumer of secret raises JMSSecurityException");
        c.close();
    }

    static void asyncBurst() throws Exception {
        Connection c = connect("?jms.useAsyncSend=true");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.burst");
        MessageProducer p = s.createProducer(q);
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = 0; i < 2000; i++) p.send(s.createTextMessage("b" + i));
        MessageConsumer mc = s.createConsumer(q);
        for (int i = 0; i < 2000; i++) {
            TextMessage m = (TextMessage) mc.receive(10000);
            check(m != null && m.getText().equals("b" + i), "burst message " + i);
        }
        c.close();
    }

    static void types() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.types");
        Queue reply = s.createQueue("ow.reply");
        MessageProducer p = s.createProducer(q);
        TextMessage t = s.createTextMessage("héllo");
        t.setBooleanProperty("b", true);
        t.setByteProperty("y", (byte) -3);
        t.setShortProperty("s", (short) 300);
        t.setIntProperty("i", 70000);
        t.setLongProperty("l", 1L << 40);
        t.setFloatProperty("f", 1.5f);
        t.setDoubleProperty("d", 2.25);
        t.setStringProperty("str", "v");
        t.setJMSCorrelationID("corr-1");
        t.setJMSType("kind");
        t.setJMSReplyTo(reply);
        p.send(t, DeliveryMode.PERSISTENT, 7, 0);
        BytesMessage b = s.createBytesMessage();
        b.writeBytes(new byte[] {1, 2, 3, 0, -1});
        p.send(b);
        MapMessage m = s.createMapMessage();
        m.setString("name", "x");
        m.setInt("n", 42);
        m.setDouble("r", 0.5);
        m.setBytes("raw", new byte[] {9, 8});
        p.send(m);
        MessageConsumer mc = s.createConsumer(q);
        TextMessage t2 = (TextMessage) mc.receive(10000);
        check(t2.getText().equals("héllo"), "text");
        check(t2.getBooleanProperty("b"), "bool");
        check(t2.getByteProperty("y") == -3, "byte");
        check(t2.getShortProperty("s") == 300, "short");
        check(t2.getIntProperty("i") == 70000, "int");
        check(t2.getLongProperty("l") == 1L << 40, "long");
        check(t2.getFloatProperty("f") == 1.5f, "float");
        check(t2.getDoubleProperty("d") == 2.25, "double");
        check(t2.getStringProperty("str").equals("v"), "string");
        check("corr-1".equals(t2.getJMSCorrelationID()), "correlation id");
        check("kind".equals(t2.getJMSType()), "type");
        check(reply.equals(t2.getJMSReplyTo()), "reply-to " + t2.getJMSReplyTo());
        check(t2.getJMSPriority() == 7, "priority " + t2.getJMSPriority());
        check(t2.getJMSDeliveryMode() == DeliveryMode.PERSISTENT, "persistent");
        BytesMessage b2 = (BytesMessage) mc.receive(10000);
        byte[] got = new byte[10];
        int n = b2.readBytes(got);
        check(n == 5 && got[0] == 1 && got[4] == -1, "bytes body");
        MapMessage m2 = (MapMessage) mc.receive(10000);
        check(m2.getString("name").equals("x") && m2.getInt("n") == 42 && m2.getDouble("r") == 0.5
                && Arrays.equals(m2.getBytes("raw"), new byte[] {9, 8}), "map body");
        c.close();
    }

    static void selector() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.selector");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 6; i++) {
            TextMessage m = s.createTextMessage("s" + i);
            m.setStringProperty("colour", i % 2 == 0 ? "red" : "blue");
            m.setIntProperty("n", i);
            p.send(m);
        }
        MessageConsumer mc = s.createConsumer(q, "colour = 'red' AND n > 0");
        TextMessage a = (TextMessage) mc.receive(10000);
        check(a != null && a.getText().equals("s2"), "s2 first: " + a);
        TextMessage b = (TextMessage) mc.receive(10000);
        check(b != null && b.getText().equals("s4"), "s4");
        check(mc.receive(300) == null, "nothing more matches");
        c.close();
    }

    // A selector over the broker's node limit is refused with the exception ActiveMQ uses for
    // bad selectors; the session goes on working.
    static void bigSelector() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Topic t = s.createTopic("ow.big-selector");
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 5000; i++) big.append("a=1 OR ");
        big.append("colour = 'red'");
        try {
            s.createConsumer(t, big.toString());
            throw new AssertionError("a selector of 20,000 nodes was accepted");
        } catch (InvalidSelectorException e) {
            check(e.getMessage().contains("max_selector_nodes"), "names the limit: " + e.getMessage());
        }
        MessageConsumer mc = s.createConsumer(t, "a=1 OR colour = 'red'");
        MessageProducer p = s.createProducer(t);
        TextMessage m = s.createTextMessage("red");
        m.setStringProperty("colour", "red");
        p.send(m);
        TextMessage got = (TextMessage) mc.receive(10000);
        check(got != null && got.getText().equals("red"), "a small selector still works: " + got);
        c.close();
    }

    static Connection connectAs(String clientId) throws JMSException {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("admin", "admin", url);
        Connection c = f.createConnection();
        c.setClientID(clientId);
        c.start();
        return c;
    }

    // A durable subscriber keeps what is published while its client is away.
    static void durable() throws Exception {
        Connection c = connectAs("ow-durable");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Topic t = s.createTopic("ow.news");
        MessageConsumer sub = s.createDurableSubscriber(t, "reader");
        MessageProducer p = s.createProducer(t);
        p.send(s.createTextMessage("before"));
        TextMessage first = (TextMessage) sub.receive(10000);
        check(first != null && first.getText().equals("before"), "received while subscribed");
        c.close();
        Connection pc = connect("");
        Session ps = pc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer pp = ps.createProducer(ps.createTopic("ow.news"));
        for (int i = 0; i < 3; i++) pp.send(ps.createTextMessage("away" + i));
        pc.close();
        Connection c2 = connectAs("ow-durable");
        Session s2 = c2.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer sub2 = s2.createDurableSubscriber(s2.createTopic("ow.news"), "reader");
        for (int i = 0; i < 3; i++) {
            TextMessage m = (TextMessage) sub2.receive(10000);
            check(m != null && m.getText().equals("away" + i), "kept while away: " + i);
        }
        sub2.close();
        s2.unsubscribe("reader");
        c2.close();
    }

    /// Across a broker restart (the test restarts it between the two): a durable subscriber
    /// that went away, then persistent messages published while it was away (one with a
    /// selector-relevant property, priority and a property of every kind it keeps)...
    static void durableBeforeRestart() throws Exception {
        Connection c = connectAs("ow-restart");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        s.createDurableSubscriber(s.createTopic("ow.restart"), "reader", "kind <> 'skip'", false).close();
        c.close();
        Connection pc = connect("");
        Session ps = pc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer pp = ps.createProducer(ps.createTopic("ow.restart"));
        pp.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = 0; i < 5; i++) {
            TextMessage m = ps.createTextMessage("away" + i);
            m.setStringProperty("kind", i == 2 ? "skip" : "keep");
            m.setLongProperty("n", i);
            pp.send(m);
        }
        pc.close();
    }

    /// ...are all there after it, in order, with their properties, and only once.
    static void durableAfterRestart() throws Exception {
        Connection c = connectAs("ow-restart");
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        MessageConsumer sub = s.createDurableSubscriber(s.createTopic("ow.restart"), "reader", "kind <> 'skip'", false);
        for (int i : new int[] {0, 1, 3, 4}) {
            TextMessage m = (TextMessage) sub.receive(10000);
            check(m != null && m.getText().equals("away" + i) && m.getLongProperty("n") == i,
                  "kept across the restart: " + i + ", got " + m);
            m.acknowledge();
        }
        check(sub.receive(1000) == null, "nothing more");
        sub.close();
        s.unsubscribe("reader");
        c.close();
    }

    // Sent by the Rust STOMP client first: a text frame (no content-length), then a bytes one.
    static void fromStomp() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer mc = s.createConsumer(s.createQueue("ow.fromstomp"));
        Message a = mc.receive(10000);
        check(a instanceof TextMessage, "STOMP without content-length is a TextMessage: " + a);
        check(((TextMessage) a).getText().equals("hello java"), "text");
        check("red".equals(a.getStringProperty("colour")), "header as property");
        check("c-9".equals(a.getJMSCorrelationID()), "correlation-id");
        Message b = mc.receive(10000);
        check(b instanceof BytesMessage, "STOMP with content-length is a BytesMessage: " + b);
        byte[] got = new byte[16];
        check(((BytesMessage) b).readBytes(got) == 3 && got[1] == 0, "bytes with a NUL");
        c.close();
    }

    // Received by the Rust STOMP client afterwards.
    static void toStomp() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(s.createQueue("ow.tostomp"));
        TextMessage t = s.createTextMessage("hello stomp");
        t.setStringProperty("colour", "blue");
        t.setIntProperty("n", 5);
        t.setJMSCorrelationID("c-7");
        p.send(t, DeliveryMode.PERSISTENT, 6, 0);
        c.close();
    }

    static void moreTypes() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.more");
        MessageProducer p = s.createProducer(q);
        StreamMessage st = s.createStreamMessage();
        st.writeString("one");
        st.writeInt(2);
        st.writeBoolean(true);
        p.send(st);
        p.send(s.createObjectMessage("an object"));
        Message plain = s.createMessage();
        plain.setStringProperty("only", "headers");
        p.send(plain);
        MessageConsumer mc = s.createConsumer(q);
        StreamMessage st2 = (StreamMessage) mc.receive(10000);
        check(st2.readString().equals("one") && st2.readInt() == 2 && st2.readBoolean(), "stream body");
        ObjectMessage o = (ObjectMessage) mc.receive(10000);
        check("an object".equals(o.getObject()), "object body");
        Message plain2 = mc.receive(10000);
        check(plain2 != null && !(plain2 instanceof TextMessage) && "headers".equals(plain2.getStringProperty("only")),
                "plain message");
        c.close();
    }

    // INDIVIDUAL_ACKNOWLEDGE: acking the second message leaves the first unacked.
    static void individual() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, org.apache.activemq.ActiveMQSession.INDIVIDUAL_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.individual");
        MessageProducer p = s.createProducer(q);
        p.send(s.createTextMessage("i0"));
        p.send(s.createTextMessage("i1"));
        MessageConsumer mc = s.createConsumer(q);
        Message a = mc.receive(10000);
        Message b = mc.receive(10000);
        check(a != null && b != null, "both received");
        b.acknowledge();
        s.close();
        Session s2 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer mc2 = s2.createConsumer(q);
        TextMessage back = (TextMessage) mc2.receive(10000);
        check(back != null && back.getText().equals("i0") && back.getJMSRedelivered(), "i0 back, redelivered");
        check(mc2.receive(300) == null, "i1 stayed acked");
        c.close();
    }

    // A short inactivity duration: both sides keep the idle connection alive with KeepAliveInfo.
    static void keepalive() throws Exception {
        Connection c = connect("?wireFormat.maxInactivityDuration=600&wireFormat.maxInactivityDurationInitalDelay=300");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.idle");
        Thread.sleep(2500); // idle for four inactivity periods
        s.createProducer(q).send(s.createTextMessage("still here"));
        TextMessage m = (TextMessage) s.createConsumer(q).receive(10000);
        check(m != null && m.getText().equals("still here"), "the idle connection still works");
        c.close();
    }

    // What is refused is refused with the exception a Java developer expects.
    static void refusals() throws Exception {
        Connection c = connectAs("ow-taken");
        try {
            connectAs("ow-taken");
            throw new AssertionError("a client id in use was accepted");
        } catch (InvalidClientIDException e) {
            // expected
        }
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        try {
            // A temporary topic cannot hold a durable subscription: refused by the broker.
            s.createDurableSubscriber(s.createTemporaryTopic(), "on-a-temporary-topic");
            throw new AssertionError("a durable subscription on a temporary topic was accepted");
        } catch (JMSException e) {
            check(String.valueOf(e.getMessage()).contains("temporary"), "says why: " + e);
        }
        // The connection is still usable after a refused command.
        Queue q = s.createQueue("ow.after-refusal");
        s.createProducer(q).send(s.createTextMessage("fine"));
        TextMessage m = (TextMessage) s.createConsumer(q).receive(10000);
        check(m != null && m.getText().equals("fine"), "still works");
        c.close();
    }

    // The broker runs with max_consumers_per_connection = 5: the consumer past it is refused
    // with a ResourceAllocationException naming the key, the connection keeps working, and a
    // closed consumer gives its place back. A prefetch above ActiveMQ's maximum is accepted.
    static void consumerCap() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.cap?consumer.prefetchSize=1000000");
        java.util.List<MessageConsumer> open = new java.util.ArrayList<>();
        ResourceAllocationException refused = null;
        for (int i = 0; i < 100 && refused == null; i++) {
            try {
                open.add(s.createConsumer(q));
            } catch (ResourceAllocationException e) {
                refused = e;
            }
        }
        check(refused != null, "no cap after " + open.size() + " consumers");
        check(open.size() <= 5, "at most 5 consumers: " + open.size());
        check(String.valueOf(refused.getMessage()).contains("limits.max_consumers_per_connection"),
            "names the key: " + refused);
        open.get(0).close();
        MessageConsumer again = s.createConsumer(q);
        s.createProducer(s.createQueue("ow.cap")).send(s.createTextMessage("fine"));
        TextMessage m = (TextMessage) again.receive(10000);
        if (m == null) {
            for (MessageConsumer mc : open.subList(1, open.size())) {
                m = (TextMessage) mc.receive(1000);
                if (m != null) break;
            }
        }
        check(m != null && m.getText().equals("fine"), "still works: " + m);
        c.close();
    }

    // Prefetch 0: each receive pulls one message; an empty pull returns null in time.
    static void prefetch0() throws Exception {
        Connection c = connect("?jms.prefetchPolicy.all=0");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("ow.pull");
        MessageConsumer mc = s.createConsumer(q);
        check(mc.receive(300) == null, "empty pull answered");
        check(mc.receiveNoWait() == null, "empty no-wait pull answered");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 3; i++) p.send(s.createTextMessage("p" + i));
        // A second consumer gets a share: nothing was pushed to the first beyond its pulls.
        MessageConsumer other = s.createConsumer(q);
        TextMessage a = (TextMessage) mc.receive(10000);
        check(a != null && a.getText().equals("p0"), "first pull: " + a);
        TextMessage b = (TextMessage) other.receive(10000);
        check(b != null && b.getText().equals("p1"), "the other consumer's pull: " + b);
        TextMessage d = (TextMessage) mc.receive(10000);
        check(d != null && d.getText().equals("p2"), "second pull: " + d);
        c.close();
    }

    // Issue 25: a wildcard topic consumer, a virtual topic read by two consumer queues, a
    // composite send, and a send to a wildcard refused with InvalidDestinationException.
    static void destinations() throws Exception {
        Connection c = connect("");
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer all = s.createConsumer(s.createTopic("orders.>"));
        for (String t : new String[] {"orders.eu", "invoices.eu", "orders.us.west"}) {
            s.createProducer(s.createTopic(t)).send(s.createTextMessage(t));
        }
        for (String want : new String[] {"orders.eu", "orders.us.west"}) {
            TextMessage m = (TextMessage) all.receive(10000);
            check(m != null && m.getText().equals(want), "wildcard got " + want + ": " + m);
            check(((Topic) m.getJMSDestination()).getTopicName().equals(want),
                "JMSDestination is the topic sent to: " + m.getJMSDestination());
        }
        check(all.receive(300) == null, "nothing from invoices.eu");

        MessageConsumer a = s.createConsumer(s.createQueue("Consumer.A.VirtualTopic.Orders"));
        MessageConsumer b = s.createConsumer(s.createQueue("Consumer.B.VirtualTopic.Orders"));
        MessageProducer vp = s.createProducer(s.createTopic("VirtualTopic.Orders"));
        for (int i = 0; i < 3; i++) vp.send(s.createTextMessage("v" + i));
        for (MessageConsumer group : new MessageConsumer[] {a, b}) {
            for (int i = 0; i < 3; i++) {
                TextMessage m = (TextMessage) group.receive(10000);
                check(m != null && m.getText().equals("v" + i), "virtual topic copy v" + i + ": " + m);
            }
            check(group.receive(300) == null, "one copy per group");
        }

        s.createProducer(s.createQueue("ow.c1,ow.c2")).send(s.createTextMessage("both"));
        for (String q : new String[] {"ow.c1", "ow.c2"}) {
            TextMessage m = (TextMessage) s.createConsumer(s.createQueue(q)).receive(10000);
            check(m != null && m.getText().equals("both"), "composite copy in " + q + ": " + m);
        }

        try {
            s.createProducer(s.createQueue("orders.*")).send(s.createTextMessage("x"));
            throw new AssertionError("a send to a wildcard was accepted");
        } catch (InvalidDestinationException e) {
            check(String.valueOf(e.getMessage()).contains("wildcard"), "says why: " + e);
        }
        c.close();
    }
}
