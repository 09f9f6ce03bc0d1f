// The failover transport against a broker killed with SIGKILL and restarted (issue 22).
// Usage:
//   java FailoverChecks <port> produce <n>   sends n persistent messages, each synchronously,
//                                            over failover:(tcp://127.0.0.1:<port>); prints
//                                            "SENT i" once send i returned, then "DONE"
//   java FailoverChecks <port> consume [n]   (n: 400) receives until it has n distinct messages or
//                                            nothing comes for 10 s; exits 1 naming the
//                                            missing and the duplicated ones
import java.util.BitSet;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class FailoverChecks {
    public static void main(String[] args) {
        try {
            int port = Integer.parseInt(args[0]);
            int n = args.length > 2 ? Integer.parseInt(args[2]) : 400;
            if (args[1].equals("produce")) {
                produce(port, n);
            } else {
                consume(port, n);
            }
            System.exit(0);
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
    }

    static void produce(int port, int n) throws Exception {
        // Reconnects quickly and forever (the test bounds the run): what applications use.
        String url = "failover:(tcp://127.0.0.1:" + port + ")?initialReconnectDelay=100&maxReconnectDelay=1000";
        Connection c = new ActiveMQConnectionFactory("admin", "admin", url).createConnection();
        c.start();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(s.createQueue("failover.q"));
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = 0; i < n; i++) {
            TextMessage m = s.createTextMessage("m" + i);
            m.setIntProperty("n", i);
            p.send(m);
            System.out.println("SENT " + i);
            System.out.flush();
        }
        System.out.println("DONE");
        System.out.flush();
        c.close();
    }

    static void consume(int port, int n) throws Exception {
        Connection c = new ActiveMQConnectionFactory("admin", "admin", "tcp://127.0.0.1:" + port).createConnection();
        c.start();
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer consumer = s.createConsumer(s.createQueue("failover.q"));
        BitSet seen = new BitSet(n);
        StringBuilder duplicates = new StringBuilder();
        while (seen.cardinality() < n) {
            Message m = consumer.receive(10000);
            if (m == null) break;
            int i = m.getIntProperty("n");
            if (seen.get(i)) duplicates.append(' ').append(i);
            seen.set(i);
        }
        // Anything more would be a duplicate too.
        for (Message m; (m = consumer.receive(1000)) != null; ) {
            duplicates.append(' ').append(m.getIntProperty("n"));
        }
        c.close();
        StringBuilder missing = new StringBuilder();
        for (int i = seen.nextClearBit(0); i < n; i = seen.nextClearBit(i + 1)) {
            missing.append(' ').append(i);
        }
        if (missing.length() > 0 || duplicates.length() > 0) {
            throw new AssertionError("missing:" + missing + "; duplicated:" + duplicates);
        }
        System.out.println("ok " + n + " received once each");
    }
}
