// XA over OpenWire with the stock ActiveMQ client: ActiveMQXAConnectionFactory, an XASession's
// XAResource driven as a transaction manager would, with an Xid of our own.
// Usage: java XaChecks <port> <check>; exits 0 when the check passes, prints why not.
import java.util.Arrays;
import javax.jms.*;
import javax.transaction.xa.XAException;
import javax.transaction.xa.XAResource;
import javax.transaction.xa.Xid;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQXAConnectionFactory;

public class XaChecks {
    static String url;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    /// A branch id as a transaction manager makes them: format, global id, branch qualifier.
    static final class TestXid implements Xid {
        final byte[] global;
        final byte[] branch;

        TestXid(String global, String branch) {
            this.global = global.getBytes();
            this.branch = branch.getBytes();
        }

        public int getFormatId() { return 0x1ee7; }
        public byte[] getGlobalTransactionId() { return global; }
        public byte[] getBranchQualifier() { return branch; }

        static boolean same(Xid a, Xid b) {
            return a.getFormatId() == b.getFormatId()
                && Arrays.equals(a.getGlobalTransactionId(), b.getGlobalTransactionId())
                && Arrays.equals(a.getBranchQualifier(), b.getBranchQualifier());
        }
    }

    static ActiveMQXAConnectionFactory factory() {
        return new ActiveMQXAConnectionFactory("admin", "admin", url);
    }

    /// An XA connection, its one XA session, and that session's resource.
    static final class Xa {
        final XAConnection connection;
        final XASession xaSession;
        final Session session;
        final XAResource resource;

        Xa() throws JMSException {
            connection = factory().createXAConnection();
            connection.start();
            xaSession = connection.createXASession();
            session = xaSession.getSession();
            resource = xaSession.getXAResource();
        }
    }

    /// A plain AUTO_ACKNOWLEDGE consumer to watch what is delivered.
    static MessageConsumer watch(Connection c, String queue) throws JMSException {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        return s.createConsumer(s.createQueue(queue));
    }

    /// Not the XA factory's: its connections make XA sessions, which refuse work outside a
    /// branch.
    static Connection plain() throws JMSException {
        Connection c = new ActiveMQConnectionFactory("admin", "admin", url).createConnection();
        c.start();
        return c;
    }

    static String text(Message m) throws JMSException {
        return m == null ? null : ((TextMessage) m).getText();
    }

    /// Runs `body` and expects an XAException with `code`.
    static void expectXa(int code, String what, XaCall body) throws Exception {
        try {
            body.run();
        } catch (XAException e) {
            check(e.errorCode == code, what + ": errorCode " + e.errorCode + " (" + e.getMessage() + "), expected " + code);
            return;
        }
        throw new AssertionError(what + ": no XAException");
    }

    interface XaCall {
        void run() throws Exception;
    }

    public static void main(String[] args) {
        try {
            url = args[0].contains("://") ? args[0] : "tcp://127.0.0.1:" + args[0];
            String check = args[1];
            switch (check) {
                case "two-phase": twoPhase(); break;
                case "rollback-prepared": rollbackPrepared(); break;
                case "one-phase": onePhase(); break;
                case "receive-rollback": receiveRollback(); break;
                case "prepare-and-leave": prepareAndLeave(); break;
                case "recover-and-commit": recoverAndCommit(); break;
                default: throw new IllegalArgumentException(check);
            }
            System.out.println("ok " + check);
            System.exit(0);
        } catch (Throwable t) {
            // The client's own threads would keep a failed JVM alive: exit explicitly.
            t.printStackTrace();
            System.exit(1);
        }
    }

    // (a) start, send, end, prepare, commit (two-phase): delivered only after the commit.
    static void twoPhase() throws Exception {
        Xa xa = new Xa();
        Connection c = plain();
        MessageConsumer seen = watch(c, "xa.2pc");
        MessageProducer p = xa.session.createProducer(xa.session.createQueue("xa.2pc"));
        Xid xid = new TestXid("two-phase", "b1");
        xa.resource.start(xid, XAResource.TMNOFLAGS);
        p.send(xa.session.createTextMessage("x1"));
        xa.resource.end(xid, XAResource.TMSUCCESS);
        check(seen.receive(300) == null, "nothing before prepare");
        check(xa.resource.prepare(xid) == XAResource.XA_OK, "prepare votes XA_OK");
        check(seen.receive(300) == null, "nothing after prepare, before commit");
        xa.resource.commit(xid, false);
        check("x1".equals(text(seen.receive(10000))), "x1 delivered after commit");
        check(seen.receive(300) == null, "x1 once");
        expectXa(XAException.XAER_NOTA, "commit of an ended branch", () -> xa.resource.commit(xid, false));
        // A branch that did nothing is read-only: over at prepare.
        Xid idle = new TestXid("two-phase", "idle");
        xa.resource.start(idle, XAResource.TMNOFLAGS);
        xa.resource.end(idle, XAResource.TMSUCCESS);
        check(xa.resource.prepare(idle) == XAResource.XA_RDONLY, "an idle branch votes XA_RDONLY");
        expectXa(XAException.XAER_NOTA, "commit of a read-only branch", () -> xa.resource.commit(idle, false));
        xa.connection.close();
        c.close();
    }

    // (b) rollback after prepare: nothing is delivered and the branch is gone.
    static void rollbackPrepared() throws Exception {
        Xa xa = new Xa();
        Connection c = plain();
        MessageConsumer seen = watch(c, "xa.rb");
        MessageProducer p = xa.session.createProducer(xa.session.createQueue("xa.rb"));
        Xid xid = new TestXid("rollback", "b1");
        xa.resource.start(xid, XAResource.TMNOFLAGS);
        p.send(xa.session.createTextMessage("never"));
        xa.resource.end(xid, XAResource.TMSUCCESS);
        check(xa.resource.prepare(xid) == XAResource.XA_OK, "prepare votes XA_OK");
        boolean listed = false;
        for (Xid x : xa.resource.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN)) {
            listed |= TestXid.same(x, xid);
        }
        check(listed, "recover lists the prepared branch");
        xa.resource.rollback(xid);
        for (Xid x : xa.resource.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN)) {
            check(!TestXid.same(x, xid), "recover no longer lists the rolled back branch");
        }
        check(seen.receive(500) == null, "nothing delivered after the rollback");
        expectXa(XAException.XAER_NOTA, "rollback again", () -> xa.resource.rollback(xid));
        xa.connection.close();
        c.close();
    }

    // (c) one-phase commit (after a refused two-phase commit of the unprepared branch).
    static void onePhase() throws Exception {
        Xa xa = new Xa();
        Connection c = plain();
        MessageConsumer seen = watch(c, "xa.1pc");
        MessageProducer p = xa.session.createProducer(xa.session.createQueue("xa.1pc"));
        Xid xid = new TestXid("one-phase", "b1");
        xa.resource.start(xid, XAResource.TMNOFLAGS);
        p.send(xa.session.createTextMessage("o1"));
        p.send(xa.session.createTextMessage("o2"));
        xa.resource.end(xid, XAResource.TMSUCCESS);
        check(seen.receive(300) == null, "nothing before commit");
        expectXa(XAException.XAER_PROTO, "two-phase commit without prepare", () -> xa.resource.commit(xid, false));
        xa.resource.commit(xid, true);
        check("o1".equals(text(seen.receive(10000))), "o1 after the one-phase commit");
        check("o2".equals(text(seen.receive(10000))), "o2 after the one-phase commit");
        check(seen.receive(300) == null, "each once");
        xa.connection.close();
        c.close();
    }

    // (d) a message consumed in a branch that is prepared and rolled back comes again,
    // redelivered, once; consumed in a committed branch it is gone.
    static void receiveRollback() throws Exception {
        Connection c = plain();
        Session ps = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        ps.createProducer(ps.createQueue("xa.recv")).send(ps.createTextMessage("job"));
        Xa xa = new Xa();
        MessageConsumer mc = xa.session.createConsumer(xa.session.createQueue("xa.recv"));
        Xid first = new TestXid("receive", "b1");
        xa.resource.start(first, XAResource.TMNOFLAGS);
        Message m = mc.receive(10000);
        check("job".equals(text(m)), "job received in the branch: " + m);
        check(!m.getJMSRedelivered(), "not redelivered the first time");
        xa.resource.end(first, XAResource.TMSUCCESS);
        check(xa.resource.prepare(first) == XAResource.XA_OK, "prepare votes XA_OK");
        xa.resource.rollback(first);
        Xid second = new TestXid("receive", "b2");
        xa.resource.start(second, XAResource.TMNOFLAGS);
        Message again = mc.receive(10000);
        check("job".equals(text(again)), "job again after the rollback: " + again);
        check(again.getJMSRedelivered(), "flagged redelivered");
        check(mc.receive(500) == null, "job only once more");
        xa.resource.end(second, XAResource.TMSUCCESS);
        xa.resource.commit(second, true);
        xa.connection.close();
        MessageConsumer after = watch(c, "xa.recv");
        check(after.receive(500) == null, "job consumed by the committed branch");
        c.close();
    }

    static final Xid SURVIVOR = new TestXid("restart", "b1");

    // (e), before the restart: a prepared branch left behind by a client that goes away.
    // The branch consumes "input" and sends "survivor".
    static void prepareAndLeave() throws Exception {
        Connection c = plain();
        Session ps = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        ps.createProducer(ps.createQueue("xa.restart.in")).send(ps.createTextMessage("input"));
        Xa xa = new Xa();
        MessageProducer p = xa.session.createProducer(xa.session.createQueue("xa.restart"));
        MessageConsumer mc = xa.session.createConsumer(xa.session.createQueue("xa.restart.in"));
        xa.resource.start(SURVIVOR, XAResource.TMNOFLAGS);
        check("input".equals(text(mc.receive(10000))), "input received in the branch");
        p.send(xa.session.createTextMessage("survivor"));
        xa.resource.end(SURVIVOR, XAResource.TMSUCCESS);
        check(xa.resource.prepare(SURVIVOR) == XAResource.XA_OK, "prepare votes XA_OK");
        // No commit: the process exits with the branch prepared.
    }

    // (e), after the restart: recover finds the branch, commit delivers its message once.
    static void recoverAndCommit() throws Exception {
        Connection c = plain();
        MessageConsumer seen = watch(c, "xa.restart");
        MessageConsumer input = watch(c, "xa.restart.in");
        check(seen.receive(500) == null, "the prepared message is not delivered before commit");
        check(input.receive(500) == null, "the message the branch consumed is held");
        Xa xa = new Xa();
        Xid found = null;
        for (Xid x : xa.resource.recover(XAResource.TMSTARTRSCAN)) {
            if (TestXid.same(x, SURVIVOR)) found = x;
        }
        check(found != null, "recover(TMSTARTRSCAN) lists the prepared branch");
        xa.resource.commit(found, false);
        check("survivor".equals(text(seen.receive(10000))), "delivered after the commit");
        check(seen.receive(500) == null, "delivered once");
        check(input.receive(500) == null, "the message the branch consumed is gone");
        for (Xid x : xa.resource.recover(XAResource.TMSTARTRSCAN | XAResource.TMENDRSCAN)) {
            check(!TestXid.same(x, SURVIVOR), "no longer prepared");
        }
        xa.connection.close();
        c.close();
    }
}
