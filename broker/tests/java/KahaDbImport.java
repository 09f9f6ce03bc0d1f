// The messages `broker import-kahadb` must carry over: `fill` leaves them in an ActiveMQ
// (queues partly consumed, a committed and a rolled-back transaction, two durable
// subscriptions one of which consumed part); `check` finds exactly those in this broker.
// Usage: KahaDbImport PORT fill|check. Exit status 0 when all is as expected.

import java.util.ArrayList;
import java.util.List;
import javax.jms.*;
import javax.transaction.xa.XAResource;
import javax.transaction.xa.Xid;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQXAConnectionFactory;

public class KahaDbImport {
    static final String CLIENT_ID = "importer";

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

    static String port;

    static void run(String[] args) throws Exception {
        port = args[0];
        // admin/admin: this broker's default user; ActiveMQ here has no authentication.
        ActiveMQConnectionFactory f =
            new ActiveMQConnectionFactory("admin", "admin", "tcp://127.0.0.1:" + args[0]);
        Connection c = f.createConnection();
        c.setClientID(CLIENT_ID);
        c.start();
        try {
            java.nio.file.Path ids = java.nio.file.Paths.get(args[2]);
            if (args[1].equals("fill")) {
                java.nio.file.Files.write(ids, fill(c));
            } else {
                check(c, java.nio.file.Files.readAllLines(ids));
            }
        } finally {
            c.close();
        }
        System.out.println(args[1] + " ok");
    }

    /// The XA branch `fill` prepares and leaves.
    static final class LeftXid implements Xid {
        public int getFormatId() { return 0x1ee7; }
        public byte[] getGlobalTransactionId() { return "imported".getBytes(); }
        public byte[] getBranchQualifier() { return "b1".getBytes(); }

        static boolean same(Xid x) {
            return x.getFormatId() == 0x1ee7
                && java.util.Arrays.equals(x.getGlobalTransactionId(), "imported".getBytes())
                && java.util.Arrays.equals(x.getBranchQualifier(), "b1".getBytes());
        }
    }

    static XAConnection xaConnection(String port) throws JMSException {
        XAConnection xc = new ActiveMQXAConnectionFactory(
            "admin", "admin", "tcp://127.0.0.1:" + port).createXAConnection();
        xc.start();
        return xc;
    }

    static List<String> fill(Connection c) throws Exception {
        List<String> ids = new ArrayList<>();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q1 = s.createQueue("imp.q1");
        Queue q2 = s.createQueue("imp.q2");
        Topic t = s.createTopic("imp.t");
        // The subscriptions must exist before the publishes to keep them.
        s.createDurableSubscriber(t, "s1").close();
        s.createDurableSubscriber(t, "s2", "n >= 0", false).close();

        MessageProducer p = s.createProducer(null);
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = 1; i <= 3; i++) {
            TextMessage m = s.createTextMessage("text " + i);
            m.setStringProperty("kind", "text");
            m.setIntProperty("n", i);
            m.setBooleanProperty("flag", i % 2 == 0);
            m.setLongProperty("big", 1L << 40);
            m.setDoubleProperty("ratio", 0.5);
            m.setJMSCorrelationID("corr-" + i);
            p.send(q1, m);
        }
        BytesMessage b = s.createBytesMessage();
        b.writeBytes(new byte[] {1, 2, 3, 0, (byte) 255});
        b.setStringProperty("kind", "bytes");
        p.send(q1, b);
        MapMessage mm = s.createMapMessage();
        mm.setString("name", "map");
        mm.setInt("count", 42);
        mm.setStringProperty("kind", "map");
        p.send(q1, mm);
        for (int i = 0; i < 3; i++) {
            TextMessage m = s.createTextMessage("q2-" + i);
            m.setIntProperty("n", i);
            p.send(q2, m);
            ids.add(m.getJMSMessageID());
        }
        for (int i = 0; i < 4; i++) {
            TextMessage m = s.createTextMessage("t-" + i);
            m.setIntProperty("n", i);
            p.send(t, m);
        }

        Session tx = c.createSession(true, Session.SESSION_TRANSACTED);
        MessageProducer tp = tx.createProducer(q2);
        tp.send(tx.createTextMessage("q2-committed"));
        tx.commit();
        tp.send(tx.createTextMessage("q2-rolled-back"));
        tx.rollback();
        tx.close();

        // Consume the first two of imp.q1 and of s1 (prefetch 1 so nothing else is held).
        Session one = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        MessageConsumer qc = one.createConsumer(one.createQueue("imp.q1?consumer.prefetchSize=1"));
        for (int i = 1; i <= 2; i++) {
            Message m = qc.receive(10000);
            expect(m instanceof TextMessage && ((TextMessage) m).getText().equals("text " + i),
                "imp.q1 message " + i + ": " + m);
            m.acknowledge();
        }
        qc.close();
        MessageConsumer tc = one.createDurableSubscriber(
            one.createTopic("imp.t?consumer.prefetchSize=1"), "s1");
        for (int i = 0; i < 2; i++) {
            Message m = tc.receive(10000);
            expect(m instanceof TextMessage && ((TextMessage) m).getText().equals("t-" + i),
                "s1 message " + i + ": " + m);
            m.acknowledge();
        }
        tc.close();
        one.close();
        s.close();

        // An XA branch prepared and never finished.
        XAConnection xc = xaConnection(port);
        XASession xs = xc.createXASession();
        XAResource r = xs.getXAResource();
        Xid xid = new LeftXid();
        r.start(xid, XAResource.TMNOFLAGS);
        xs.getSession().createProducer(xs.getSession().createQueue("imp.xa"))
            .send(xs.getSession().createTextMessage("xa-prepared"));
        r.end(xid, XAResource.TMSUCCESS);
        expect(r.prepare(xid) == XAResource.XA_OK, "prepare votes XA_OK");
        xc.close();
        return ids;
    }

    static void check(Connection c, List<String> ids) throws Exception {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        List<Message> q1 = drain(s.createConsumer(s.createQueue("imp.q1")));
        expect(q1.size() == 3, "imp.q1 has " + q1.size() + " messages, expected 3: " + q1);
        TextMessage t3 = (TextMessage) q1.get(0);
        expect(t3.getText().equals("text 3"), "text: " + t3.getText());
        expect(t3.getStringProperty("kind").equals("text"), "kind");
        expect(t3.getIntProperty("n") == 3, "n");
        expect(!t3.getBooleanProperty("flag"), "flag");
        expect(t3.getLongProperty("big") == 1L << 40, "big");
        expect(t3.getDoubleProperty("ratio") == 0.5, "ratio");
        expect("corr-3".equals(t3.getJMSCorrelationID()), "correlation id");
        expect(t3.getJMSDeliveryMode() == DeliveryMode.PERSISTENT, "persistent");
        BytesMessage b = (BytesMessage) q1.get(1);
        byte[] body = new byte[(int) b.getBodyLength()];
        b.readBytes(body);
        expect(java.util.Arrays.equals(body, new byte[] {1, 2, 3, 0, (byte) 255}), "bytes body");
        expect(b.getStringProperty("kind").equals("bytes"), "bytes kind");
        MapMessage m = (MapMessage) q1.get(2);
        expect(m.getString("name").equals("map") && m.getInt("count") == 42, "map body");

        List<Message> q2 = drain(s.createConsumer(s.createQueue("imp.q2")));
        List<String> texts = new ArrayList<>();
        for (Message x : q2) texts.add(((TextMessage) x).getText());
        expect(texts.equals(List.of("q2-0", "q2-1", "q2-2", "q2-committed")), "imp.q2: " + texts);
        for (int i = 0; i < ids.size(); i++) {
            // The JMSMessageID the producer saw in ActiveMQ is the one this broker gives.
            expect(q2.get(i).getJMSMessageID().equals(ids.get(i)),
                "message id " + q2.get(i).getJMSMessageID() + " != " + ids.get(i));
        }

        Topic t = s.createTopic("imp.t");
        List<String> s1 = texts(drain(s.createDurableSubscriber(t, "s1")));
        expect(s1.equals(List.of("t-2", "t-3")), "s1: " + s1);
        List<String> s2 = texts(drain(s.createDurableSubscriber(t, "s2", "n >= 0", false)));
        expect(s2.equals(List.of("t-0", "t-1", "t-2", "t-3")), "s2: " + s2);

        MessageConsumer xaSeen = s.createConsumer(s.createQueue("imp.xa"));
        expect(xaSeen.receive(500) == null, "the prepared message is not delivered before commit");
        XAConnection xc = xaConnection(port);
        XAResource r = xc.createXASession().getXAResource();
        Xid found = null;
        for (Xid x : r.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN)) {
            if (LeftXid.same(x)) found = x;
        }
        expect(found != null, "recover lists the imported prepared branch");
        r.commit(found, false);
        xc.close();
        List<String> xa = texts(drain(xaSeen));
        expect(xa.equals(List.of("xa-prepared")), "imp.xa after the commit: " + xa);
        s.close();
    }

    static List<String> texts(List<Message> ms) throws JMSException {
        List<String> out = new ArrayList<>();
        for (Message x : ms) out.add(((TextMessage) x).getText());
        return out;
    }

    static List<Message> drain(MessageConsumer consumer) throws JMSException {
        System.out.println("draining " + consumer);
        List<Message> out = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            Message m = consumer.receive(out.isEmpty() ? 5000 : 1500);
            if (m == null) break;
            out.add(m);
        }
        System.out.println("drained " + out.size());
        consumer.close();
        return out;
    }

    static void expect(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAILED: " + what);
            System.exit(1);
        }
    }
}
