// Temporary destinations and queue browsers with the stock ActiveMQ JMS client.
// Usage: java TemporaryChecks <port> <check>; exits 0 when the check passes, prints why not.
import java.util.Enumeration;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class TemporaryChecks {
    static String url;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Connection connect() throws JMSException {
        Connection c = new ActiveMQConnectionFactory("admin", "admin", url).createConnection();
        c.start();
        return c;
    }

    public static void main(String[] args) {
        try {
            url = "tcp://127.0.0.1:" + args[0];
            switch (args[1]) {
                case "request-reply": requestReply(); break;
                case "gone-with-connection": goneWithConnection(); break;
                case "temp-topic": tempTopic(); break;
                case "browser": browser(); break;
                default: throw new IllegalArgumentException(args[1]);
            }
            System.out.println("ok " + args[1]);
            System.exit(0);
        } catch (Throwable t) {
            // The client's own threads would keep a failed JVM alive: exit explicitly.
            t.printStackTrace();
            System.exit(1);
        }
    }

    /** Answers every request on `queue` to its JMSReplyTo, from a connection of its own. */
    static Connection replier(String queue) throws JMSException {
        Connection c = connect();
        final Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        final MessageProducer anywhere = s.createProducer(null);
        s.createConsumer(s.createQueue(queue)).setMessageListener(m -> {
            try {
                Destination to = m.getJMSReplyTo();
                TextMessage r = s.createTextMessage("re: " + ((TextMessage) m).getText()
                        + (to instanceof TemporaryQueue || to instanceof TemporaryTopic ? " (temporary)" : ""));
                r.setJMSCorrelationID(m.getJMSCorrelationID());
                anywhere.send(to, r);
            } catch (JMSException e) {
                e.printStackTrace();
            }
        });
        return c;
    }

    // Request/reply between two connections over a temporary queue, replies sent persistent.
    static void requestReply() throws Exception {
        Connection server = replier("tmp.requests");
        Connection c = connect();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        TemporaryQueue replies = s.createTemporaryQueue();
        MessageConsumer mc = s.createConsumer(replies);
        MessageProducer p = s.createProducer(s.createQueue("tmp.requests"));
        for (int i = 0; i < 5; i++) {
            TextMessage m = s.createTextMessage("q" + i);
            m.setJMSReplyTo(replies);
            m.setJMSCorrelationID("c" + i);
            p.send(m);
        }
        for (int i = 0; i < 5; i++) {
            TextMessage r = (TextMessage) mc.receive(10000);
            check(r != null, "reply " + i);
            check(r.getText().equals("re: q" + i + " (temporary)"), "reply text: " + r.getText());
            check(r.getJMSCorrelationID().equals("c" + i), "correlation id");
            check(r.getJMSDestination() instanceof TemporaryQueue, "came by the temporary queue");
            check(r.getJMSDeliveryMode() == DeliveryMode.PERSISTENT, "delivery mode kept");
        }
        // Deleted by its owner once no consumer uses it.
        mc.close();
        replies.delete();
        c.close();
        server.close();
    }

    // A temporary queue goes when its connection closes: a later send to it fails, whether
    // the client learns of it from the advisory or the broker refuses the send.
    static void goneWithConnection() throws Exception {
        Connection owner = connect();
        Session os = owner.createSession(false, Session.AUTO_ACKNOWLEDGE);
        TemporaryQueue tmp = os.createTemporaryQueue();
        MessageProducer p = os.createProducer(os.createQueue("tmp.handover"));
        TextMessage m = os.createTextMessage("reply to me");
        m.setJMSReplyTo(tmp);
        p.send(m);

        Connection other = connect();
        Session s = other.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Message got = s.createConsumer(s.createQueue("tmp.handover")).receive(10000);
        check(got != null, "the request");
        Destination replyTo = got.getJMSReplyTo();
        check(replyTo instanceof TemporaryQueue, "a temporary reply-to: " + replyTo);
        MessageProducer anywhere = s.createProducer(null);
        anywhere.send(replyTo, s.createTextMessage("while it lives"));
        try {
            s.createConsumer(replyTo);
            throw new AssertionError("consumed another connection's temporary queue");
        } catch (InvalidDestinationException e) {
            // expected (the client refuses before the broker would)
        }
        // A client that does not watch the advisories sends anyway: an asynchronous send is
        // refused through the exception listener, and the connection goes on.
        Connection blind = new ActiveMQConnectionFactory("admin", "admin",
                url + "?jms.watchTopicAdvisories=false").createConnection();
        final java.util.concurrent.LinkedBlockingQueue<JMSException> errors =
                new java.util.concurrent.LinkedBlockingQueue<>();
        blind.setExceptionListener(errors::add);
        blind.start();
        Session bs = blind.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer bp = bs.createProducer(null);
        bp.setDeliveryMode(DeliveryMode.NON_PERSISTENT);

        owner.close();
        bp.send(replyTo, bs.createTextMessage("to nobody"));
        JMSException refused = errors.poll(10, java.util.concurrent.TimeUnit.SECONDS);
        check(refused != null, "the asynchronous send to a deleted temporary queue is reported");
        check(String.valueOf(refused.getMessage()).contains(((TemporaryQueue) replyTo).getQueueName()),
                "the report names it: " + refused);
        Queue after = bs.createQueue("tmp.after-refusal");
        bs.createProducer(after).send(bs.createTextMessage("still here"));
        Message still = bs.createConsumer(after).receive(10000);
        check(still != null, "the connection goes on after the refusal");
        blind.close();

        long deadline = System.currentTimeMillis() + 10000;
        while (true) {
            try {
                anywhere.send(replyTo, s.createTextMessage("too late"));
            } catch (JMSException e) {
                check(String.valueOf(e.getMessage()).contains(((TemporaryQueue) replyTo).getQueueName()),
                        "the error names it: " + e);
                break;
            }
            check(System.currentTimeMillis() < deadline, "a send to a deleted temporary queue still accepted");
            Thread.sleep(20);
        }
        other.close();
    }

    // A temporary topic: each of the owner's subscribers gets the replies.
    static void tempTopic() throws Exception {
        Connection server = replier("tmp.topic-requests");
        Connection c = connect();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        TemporaryTopic t = s.createTemporaryTopic();
        MessageConsumer a = s.createConsumer(t);
        MessageConsumer b = s.createConsumer(t);
        TextMessage m = s.createTextMessage("fan");
        m.setJMSReplyTo(t);
        s.createProducer(s.createQueue("tmp.topic-requests")).send(m);
        for (MessageConsumer mc : new MessageConsumer[] {a, b}) {
            TextMessage r = (TextMessage) mc.receive(10000);
            check(r != null && r.getText().equals("re: fan (temporary)"), "each subscriber: " + r);
        }
        c.close();
        server.close();
    }

    static int count(QueueBrowser b) throws JMSException {
        int n = 0;
        Enumeration<?> e = b.getEnumeration();
        while (e.hasMoreElements()) {
            Message m = (Message) e.nextElement();
            check(m.getIntProperty("n") == n || b.getMessageSelector() != null, "in order");
            n++;
        }
        return n;
    }

    // A browser sees the queue's messages, persistent or not (a selector some of them), takes
    // none; a temporary queue's owner can browse it too.
    static void browser() throws Exception {
        Connection c = connect();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue("tmp.browse");
        MessageProducer p = s.createProducer(q);
        for (int i = 0; i < 12; i++) {
            TextMessage m = s.createTextMessage("b" + i);
            m.setIntProperty("n", i);
            // The last two are held in memory only, not in the store.
            p.send(m, i < 10 ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT, 4, 0);
        }
        check(count(s.createBrowser(q)) == 12, "the browser sees all twelve");
        QueueBrowser some = s.createBrowser(q, "n >= 7");
        int seen = 0;
        Enumeration<?> e = some.getEnumeration();
        while (e.hasMoreElements()) {
            TextMessage m = (TextMessage) e.nextElement();
            check(m.getIntProperty("n") == 7 + seen, "selected in order: " + m.getText());
            seen++;
        }
        check(seen == 5, "the selector picks five, got " + seen);
        check(count(s.createBrowser(q)) == 12, "browsing took nothing");
        MessageConsumer mc = s.createConsumer(q);
        java.util.Set<String> got = new java.util.HashSet<>();
        for (int i = 0; i < 12; i++) {
            TextMessage m = (TextMessage) mc.receive(10000);
            check(m != null, "consumed after browsing: " + got);
            check(!m.getJMSRedelivered(), "not redelivered");
            got.add(m.getText());
        }
        check(got.size() == 12, "all twelve once: " + got);
        check(mc.receive(300) == null, "nothing more");

        TemporaryQueue tmp = s.createTemporaryQueue();
        MessageProducer tp = s.createProducer(tmp);
        for (int i = 0; i < 3; i++) {
            TextMessage m = s.createTextMessage("t" + i);
            m.setIntProperty("n", i);
            tp.send(m);
        }
        check(count(s.createBrowser(tmp)) == 3, "the temporary queue browsed");
        MessageConsumer tc = s.createConsumer(tmp);
        for (int i = 0; i < 3; i++) {
            TextMessage m = (TextMessage) tc.receive(10000);
            check(m != null && m.getText().equals("t" + i), "then consumed: " + m);
        }
        c.close();
    }
}
