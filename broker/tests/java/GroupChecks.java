// Message groups and exclusive consumers through the stock ActiveMQ JMS client (issue 25).
// Usage: java GroupChecks <port> <check>; exits 0 when the check passes, prints why not.
import java.util.ArrayList;
import java.util.List;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class GroupChecks {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) {
        try {
            String url = "tcp://127.0.0.1:" + args[0];
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("admin", "admin", url);
            Connection c = f.createConnection();
            c.start();
            switch (args[1]) {
                case "groups": groups(c); break;
                case "exclusive": exclusive(c); break;
                default: throw new IllegalArgumentException(args[1]);
            }
            c.close();
            System.out.println("ok " + args[1]);
            System.exit(0);
        } catch (Throwable t) {
            // The client's own threads would keep a failed JVM alive: exit explicitly.
            t.printStackTrace();
            System.exit(1);
        }
    }

    static List<TextMessage> drain(MessageConsumer mc) throws JMSException {
        List<TextMessage> out = new ArrayList<>();
        Message m;
        while ((m = mc.receive(500)) != null) out.add((TextMessage) m);
        return out;
    }

    /// Two consumers, groups A and B: each group whole on one consumer, in order, the first
    /// message of each flagged JMSXGroupFirstForConsumer.
    static void groups(Connection c) throws JMSException {
        Session s1 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Session s2 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s1.createQueue("java.groups");
        MessageConsumer c1 = s1.createConsumer(q);
        MessageConsumer c2 = s2.createConsumer(q);
        Session ps = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = ps.createProducer(q);
        for (int i = 0; i < 5; i++) {
            for (String g : new String[] {"A", "B"}) {
                TextMessage m = ps.createTextMessage(g + "-" + i);
                m.setStringProperty("JMSXGroupID", g);
                m.setIntProperty("JMSXGroupSeq", i + 1);
                p.send(m);
            }
        }
        List<TextMessage> got1 = drain(c1);
        List<TextMessage> got2 = drain(c2);
        check(got1.size() == 5 && got2.size() == 5, "5 each: " + got1.size() + " / " + got2.size());
        String g1 = got1.get(0).getStringProperty("JMSXGroupID");
        String g2 = got2.get(0).getStringProperty("JMSXGroupID");
        check(!g1.equals(g2), "the two groups on different consumers");
        for (List<TextMessage> got : List.of(got1, got2)) {
            String g = got.get(0).getStringProperty("JMSXGroupID");
            for (int i = 0; i < 5; i++) {
                TextMessage m = got.get(i);
                check(m.getText().equals(g + "-" + i), "in order, one group: " + m.getText());
                check(m.getIntProperty("JMSXGroupSeq") == i + 1, "group seq " + i);
                check(m.getBooleanProperty("JMSXGroupFirstForConsumer") == (i == 0),
                        "JMSXGroupFirstForConsumer on the first only: " + m.getText());
            }
        }
    }

    /// `consumer.exclusive=true` on the destination: that consumer gets everything, and the
    /// next exclusive one takes over when it closes.
    static void exclusive(Connection c) throws JMSException {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue excl = s.createQueue("java.exclusive?consumer.exclusive=true");
        MessageConsumer plain = s.createConsumer(s.createQueue("java.exclusive"));
        MessageConsumer e1 = s.createConsumer(excl);
        Session s2 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer e2 = s2.createConsumer(excl);
        MessageProducer p = s.createProducer(s.createQueue("java.exclusive"));
        for (int i = 0; i < 4; i++) p.send(s.createTextMessage("m" + i));
        List<TextMessage> got = drain(e1);
        check(got.size() == 4, "the exclusive consumer got all 4: " + got.size());
        check(plain.receive(300) == null && e2.receive(300) == null, "the others got nothing");
        e1.close();
        p.send(s.createTextMessage("m4"));
        Message m = e2.receive(5000);
        check(m != null && ((TextMessage) m).getText().equals("m4"), "e2 took over: " + m);
        check(plain.receive(300) == null, "still nothing for the plain consumer");
    }
}
