/*
 * Writes the byte-exact vectors the openwire crate's tests replay: each command built with the
 * real ActiveMQ client classes and marshalled by the client's own OpenWireFormat (marshal cache
 * off, size prefix on), for protocol versions 9 to 12, loose and tight.
 *
 * Files: tests/vectors/v<version>/<name>.bin (loose) and tests/vectors/v<version>-tight/ (tight
 * encoding; WireFormatInfo is always loose); a name ending in ".st" was marshalled with
 * StackTraceEnabled (throwables carry stack traces and causes), the others without.
 * The values here are mirrored in tests/java_vectors.rs, which checks every decoded field.
 *
 * Regenerate (Debian: apt-get install default-jdk-headless libactivemq-java) from openwire/:
 *
 *   J=/usr/share/java
 *   CP=$J/activemq-client.jar:$J/geronimo-jms_1.1_spec.jar:$J/geronimo-j2ee-management-1.1-spec.jar:$J/hawtbuf.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar
 *   javac -d /tmp/capture -cp $CP tests/java/Capture.java
 *   java -cp /tmp/capture:$CP Capture tests/vectors
 */

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.activemq.command.*;
import org.apache.activemq.openwire.OpenWireFormat;
import org.apache.activemq.openwire.OpenWireFormatFactory;
import org.apache.activemq.util.ByteSequence;

public class Capture {
    static final ConnectionId CONNECTION = new ConnectionId("ID:capture-1-1:1");
    static final SessionId SESSION = new SessionId(CONNECTION, 1);
    static final ProducerId PRODUCER = new ProducerId(SESSION, 2);
    static final ConsumerId CONSUMER = new ConsumerId(SESSION, 3);
    static final ActiveMQQueue QUEUE = new ActiveMQQueue("TEST.Q");
    static final ActiveMQTopic TOPIC = new ActiveMQTopic("TEST.T");
    static final ActiveMQTempQueue TEMP_QUEUE = new ActiveMQTempQueue("ID:capture-1-1:1:1");
    static final ActiveMQTempTopic TEMP_TOPIC = new ActiveMQTempTopic("ID:capture-1-1:1:2");
    static final LocalTransactionId LOCAL_TX = new LocalTransactionId(CONNECTION, 5);
    static final String TEXT = "Hello, OpenWire! \u00e9 \u20ac \uD83D\uDE00 nul:\u0000.";

    static MessageId messageId(long sequence) {
        MessageId id = new MessageId(PRODUCER, sequence);
        id.setBrokerSequenceId(40 + sequence);
        return id;
    }

    static XATransactionId xid(int n) {
        XATransactionId xid = new XATransactionId();
        xid.setFormatId(0x1234 + n);
        xid.setGlobalTransactionId(("gtrid-" + n).getBytes());
        xid.setBranchQualifier(("bq-" + n).getBytes());
        return xid;
    }

    static Throwable failure() {
        IllegalStateException cause = new IllegalStateException("root cause");
        cause.setStackTrace(new StackTraceElement[0]);
        IllegalArgumentException e = new IllegalArgumentException("bad destination", cause);
        e.setStackTrace(new StackTraceElement[] {
            new StackTraceElement("org.example.Broker", "send", "Broker.java", 42),
            new StackTraceElement("org.example.Main", "main", null, -1),
        });
        return e;
    }

    /** Every header field set, the properties holding every primitive type. */
    static void fill(Message m, long sequence) throws IOException {
        m.setCommandId(9);
        m.setResponseRequired(true);
        m.setProducerId(PRODUCER);
        m.setDestination(QUEUE);
        m.setTransactionId(LOCAL_TX);
        m.setOriginalDestination(TOPIC);
        MessageId id = messageId(sequence);
        m.setMessageId(id);
        m.setOriginalTransactionId(xid(1));
        m.setGroupID("group-a");
        m.setGroupSequence(3);
        m.setCorrelationId("corr-1");
        m.setPersistent(true);
        m.setExpiration(1700000060000L);
        m.setPriority((byte) 7);
        m.setReplyTo(TEMP_QUEUE);
        m.setTimestamp(1700000000000L);
        m.setType("my-type");
        m.setTargetConsumerId(CONSUMER);
        m.setRedeliveryCounter(2);
        m.setBrokerPath(new BrokerId[] {new BrokerId("b1"), new BrokerId("b2")});
        m.setArrival(1700000000001L);
        m.setUserID("user");
        m.setRecievedByDFBridge(true);
        m.setDroppable(true);
        m.setCluster(new BrokerId[] {new BrokerId("c1")});
        m.setBrokerInTime(1700000000002L);
        m.setBrokerOutTime(1700000000003L);
        m.setJMSXGroupFirstForConsumer(true);
        m.setProperty("bool", Boolean.TRUE);
        m.setProperty("byte", Byte.valueOf((byte) -5));
        m.setProperty("char", Character.valueOf('x'));
        m.setProperty("short", Short.valueOf((short) -300));
        m.setProperty("int", Integer.valueOf(123456));
        m.setProperty("long", Long.valueOf(-9876543210L));
        m.setProperty("float", Float.valueOf(1.5f));
        m.setProperty("double", Double.valueOf(-2.25));
        m.setProperty("string", TEXT);
        m.setProperty("bytes", new byte[] {1, 2, 3});
        m.setProperty("null", null);
        Map<String, Object> nested = new HashMap<>();
        nested.put("k", Integer.valueOf(1));
        m.setProperty("map", nested);
        List<Object> list = new ArrayList<>();
        list.add(Integer.valueOf(1));
        list.add("two");
        m.setProperty("list", list);
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 9000; i++) {
            big.append((char) ('a' + i % 26));
        }
        m.setProperty("bigstring", big.toString());
    }

    static Map<String, Object> commands(int version) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();

        OpenWireFormatFactory factory = new OpenWireFormatFactory();
        out.put("wireformat_default",
                ((OpenWireFormat) factory.createWireFormat()).getPreferedWireFormatInfo());
        factory.setTightEncodingEnabled(false);
        factory.setCacheEnabled(false);
        factory.setHost("127.0.0.1");
        factory.setIncludePlatformDetails(true);
        out.put("wireformat_loose",
                ((OpenWireFormat) factory.createWireFormat()).getPreferedWireFormatInfo());

        BrokerInfo peer = new BrokerInfo();
        peer.setBrokerId(new BrokerId("ID:peer-1"));
        peer.setBrokerURL("tcp://peer:61616");
        BrokerInfo broker = new BrokerInfo();
        broker.setCommandId(1);
        broker.setBrokerId(new BrokerId("ID:broker-1"));
        broker.setBrokerURL("tcp://localhost:61616");
        broker.setPeerBrokerInfos(new BrokerInfo[] {peer});
        broker.setBrokerName("localhost");
        broker.setFaultTolerantConfiguration(true);
        broker.setConnectionId(7);
        broker.setNetworkProperties("a=b");
        out.put("broker_info", broker);

        ConnectionInfo connection = new ConnectionInfo(CONNECTION);
        connection.setCommandId(1);
        connection.setResponseRequired(true);
        connection.setClientId("client-1");
        connection.setUserName("user");
        connection.setPassword("secret");
        connection.setBrokerPath(new BrokerId[] {new BrokerId("broker-a")});
        connection.setManageable(true);
        connection.setFaultTolerant(true);
        connection.setClientIp("tcp://127.0.0.1:5000");
        out.put("connection_info", connection);

        SessionInfo session = new SessionInfo(SESSION);
        session.setCommandId(2);
        out.put("session_info", session);

        ConsumerInfo consumer = new ConsumerInfo(CONSUMER);
        consumer.setCommandId(3);
        consumer.setResponseRequired(true);
        consumer.setDestination(TOPIC);
        consumer.setPrefetchSize(1000);
        consumer.setMaximumPendingMessageLimit(5);
        consumer.setDispatchAsync(true);
        consumer.setSelector("color = 'red'");
        consumer.setClientId("client-1");
        consumer.setSubscriptionName("durable-1");
        consumer.setNoLocal(true);
        consumer.setExclusive(true);
        consumer.setRetroactive(true);
        consumer.setPriority((byte) -2);
        consumer.setOptimizedAcknowledge(true);
        consumer.setNetworkConsumerPath(new ConsumerId[] {new ConsumerId(SESSION, 9)});
        out.put("consumer_info", consumer);

        ConsumerInfo browser = new ConsumerInfo(CONSUMER);
        browser.setCommandId(4);
        browser.setBrowser(true);
        browser.setDestination(QUEUE);
        browser.setPrefetchSize(500);
        out.put("consumer_info_browser", browser);

        ProducerInfo producer = new ProducerInfo(PRODUCER);
        producer.setCommandId(5);
        producer.setResponseRequired(true);
        producer.setDestination(QUEUE);
        producer.setWindowSize(65536);
        producer.setDispatchAsync(true);
        out.put("producer_info", producer);

        ProducerInfo anonymous = new ProducerInfo(PRODUCER);
        anonymous.setCommandId(6);
        out.put("producer_info_anonymous", anonymous);

        byte[] types = {TransactionInfo.BEGIN, TransactionInfo.PREPARE,
            TransactionInfo.COMMIT_ONE_PHASE, TransactionInfo.COMMIT_TWO_PHASE,
            TransactionInfo.ROLLBACK, TransactionInfo.FORGET, TransactionInfo.END};
        for (byte type : types) {
            TransactionInfo local = new TransactionInfo(CONNECTION, LOCAL_TX, type);
            local.setCommandId(10 + type);
            local.setResponseRequired(true);
            out.put("transaction_info_local_" + type, local);
            TransactionInfo xa = new TransactionInfo(CONNECTION, xid(2), type);
            xa.setCommandId(20 + type);
            xa.setResponseRequired(true);
            out.put("transaction_info_xa_" + type, xa);
        }
        TransactionInfo recover = new TransactionInfo(CONNECTION, null, TransactionInfo.RECOVER);
        recover.setCommandId(30);
        recover.setResponseRequired(true);
        out.put("transaction_info_recover", recover);

        for (byte type = 0; type <= 6; type++) {
            MessageAck ack = new MessageAck();
            ack.setCommandId(40 + type);
            ack.setDestination(QUEUE);
            ack.setTransactionId(type == MessageAck.STANDARD_ACK_TYPE ? LOCAL_TX : null);
            ack.setConsumerId(CONSUMER);
            ack.setAckType(type);
            ack.setFirstMessageId(messageId(1));
            ack.setLastMessageId(messageId(2));
            ack.setMessageCount(2);
            if (type == MessageAck.POISON_ACK_TYPE) {
                ack.setPoisonCause(failure());
            }
            out.put("message_ack_" + type, ack);
        }
        MessageAck poison = new MessageAck();
        poison.setCommandId(50);
        poison.setConsumerId(CONSUMER);
        poison.setAckType(MessageAck.POISON_ACK_TYPE);
        poison.setLastMessageId(messageId(3));
        poison.setMessageCount(1);
        poison.setPoisonCause(failure());
        out.put("message_ack_poison.st", poison);

        MessagePull pull = new MessagePull();
        pull.setCommandId(51);
        pull.setConsumerId(CONSUMER);
        pull.setDestination(QUEUE);
        pull.setTimeout(1000);
        pull.setCorrelationId("pull-1");
        pull.setMessageId(messageId(4));
        out.put("message_pull", pull);

        ActiveMQTextMessage dispatched = new ActiveMQTextMessage();
        dispatched.setMessageId(messageId(5));
        dispatched.setProducerId(PRODUCER);
        dispatched.setDestination(QUEUE);
        dispatched.setText("dispatched");
        dispatched.setTimestamp(1700000000000L);
        MessageDispatch dispatch = new MessageDispatch();
        dispatch.setCommandId(52);
        dispatch.setConsumerId(CONSUMER);
        dispatch.setDestination(QUEUE);
        dispatch.setMessage(dispatched);
        dispatch.setRedeliveryCounter(1);
        out.put("message_dispatch", dispatch);

        MessageDispatch browseEnd = new MessageDispatch();
        browseEnd.setCommandId(53);
        browseEnd.setConsumerId(CONSUMER);
        browseEnd.setDestination(QUEUE);
        out.put("message_dispatch_browse_end", browseEnd);

        Response response = new Response();
        response.setCorrelationId(3);
        out.put("response", response);

        ExceptionResponse exception = new ExceptionResponse(failure());
        exception.setCommandId(54);
        exception.setCorrelationId(5);
        out.put("exception_response", exception);
        out.put("exception_response.st", exception);

        DataArrayResponse recovered = new DataArrayResponse();
        recovered.setCorrelationId(30);
        recovered.setData(new DataStructure[] {xid(3), xid(4)});
        out.put("data_array_response", recovered);

        DataResponse data = new DataResponse();
        data.setCorrelationId(31);
        data.setData(xid(5));
        out.put("data_response", data);

        IntegerResponse vote = new IntegerResponse();
        vote.setCorrelationId(21);
        vote.setResult(3);
        out.put("integer_response", vote);

        KeepAliveInfo keepAlive = new KeepAliveInfo();
        keepAlive.setResponseRequired(true);
        out.put("keep_alive_info", keepAlive);
        ShutdownInfo shutdown = new ShutdownInfo();
        shutdown.setCommandId(60);
        out.put("shutdown_info", shutdown);
        FlushCommand flush = new FlushCommand();
        out.put("flush_command", flush);

        RemoveInfo removeConnection = new RemoveInfo(CONNECTION);
        removeConnection.setCommandId(61);
        removeConnection.setResponseRequired(true);
        out.put("remove_info_connection", removeConnection);
        RemoveInfo removeSession = new RemoveInfo(SESSION);
        removeSession.setCommandId(62);
        out.put("remove_info_session", removeSession);
        RemoveInfo removeConsumer = new RemoveInfo(CONSUMER);
        removeConsumer.setCommandId(63);
        removeConsumer.setLastDeliveredSequenceId(41);
        out.put("remove_info_consumer", removeConsumer);
        RemoveInfo removeProducer = new RemoveInfo(PRODUCER);
        removeProducer.setCommandId(64);
        out.put("remove_info_producer", removeProducer);

        RemoveSubscriptionInfo unsubscribe = new RemoveSubscriptionInfo();
        unsubscribe.setCommandId(65);
        unsubscribe.setResponseRequired(true);
        unsubscribe.setConnectionId(CONNECTION);
        unsubscribe.setClientId("client-1");
        unsubscribe.setSubcriptionName("durable-1");
        out.put("remove_subscription_info", unsubscribe);

        ConnectionControl control = new ConnectionControl();
        control.setCommandId(66);
        control.setFaultTolerant(true);
        control.setConnectedBrokers("tcp://a:61616,tcp://b:61616");
        control.setReconnectTo("tcp://b:61616");
        control.setRebalanceConnection(true);
        control.setToken(new byte[] {9, 8, 7});
        out.put("connection_control", control);

        ConsumerControl consumerControl = new ConsumerControl();
        consumerControl.setCommandId(67);
        consumerControl.setDestination(QUEUE);
        consumerControl.setConsumerId(CONSUMER);
        consumerControl.setPrefetch(10);
        consumerControl.setStart(true);
        out.put("consumer_control", consumerControl);

        ConnectionError error = new ConnectionError();
        error.setCommandId(68);
        error.setException(failure());
        error.setConnectionId(CONNECTION);
        out.put("connection_error", error);
        out.put("connection_error.st", error);

        ProducerAck producerAck = new ProducerAck(PRODUCER, 1024);
        producerAck.setCommandId(69);
        out.put("producer_ack", producerAck);

        DestinationInfo addTemp = new DestinationInfo(CONNECTION, DestinationInfo.ADD_OPERATION_TYPE, TEMP_QUEUE);
        addTemp.setCommandId(70);
        addTemp.setResponseRequired(true);
        out.put("destination_info_add", addTemp);
        DestinationInfo removeTemp = new DestinationInfo(CONNECTION, DestinationInfo.REMOVE_OPERATION_TYPE, TEMP_TOPIC);
        removeTemp.setCommandId(71);
        removeTemp.setTimeout(5000);
        removeTemp.setBrokerPath(new BrokerId[] {new BrokerId("b1")});
        out.put("destination_info_remove", removeTemp);

        ControlCommand controlCommand = new ControlCommand();
        controlCommand.setCommandId(72);
        controlCommand.setCommand("shutdown");
        out.put("control_command", controlCommand);

        ActiveMQMessage plain = new ActiveMQMessage();
        fill(plain, 10);
        out.put("message_plain", plain);

        ActiveMQTextMessage text = new ActiveMQTextMessage();
        fill(text, 11);
        text.setText(TEXT);
        text.getMessageId().setTextView("ID:foreign-text-view");
        out.put("message_text", text);

        ActiveMQTextMessage compressedText = new ActiveMQTextMessage();
        compressedText.setCommandId(12);
        compressedText.setMessageId(messageId(12));
        compressedText.setDestination(QUEUE);
        StringBuilder repeated = new StringBuilder();
        for (int i = 0; i < 100; i++) {
            repeated.append("compress me ");
        }
        compressedText.setText(repeated.toString());
        compressedText.compress();
        out.put("message_text_compressed", compressedText);

        ActiveMQTextMessage nullText = new ActiveMQTextMessage();
        nullText.setCommandId(13);
        nullText.setDestination(QUEUE);
        out.put("message_text_null", nullText);

        ActiveMQBytesMessage bytes = new ActiveMQBytesMessage();
        fill(bytes, 14);
        byte[] payload = new byte[256];
        for (int i = 0; i < payload.length; i++) {
            payload[i] = (byte) i;
        }
        bytes.writeBytes(payload);
        bytes.storeContent();
        out.put("message_bytes", bytes);

        ActiveMQBytesMessage compressedBytes = new ActiveMQBytesMessage();
        compressedBytes.setCommandId(15);
        compressedBytes.setDestination(QUEUE);
        byte[] pattern = new byte[2000];
        for (int i = 0; i < pattern.length; i++) {
            pattern[i] = (byte) (i % 7);
        }
        compressedBytes.writeBytes(pattern);
        compressedBytes.compress();
        out.put("message_bytes_compressed", compressedBytes);

        ActiveMQMapMessage map = new ActiveMQMapMessage();
        fill(map, 16);
        map.setBoolean("bool", true);
        map.setByte("byte", (byte) 5);
        map.setChar("char", '\u00e9');
        map.setShort("short", (short) 300);
        map.setInt("int", -123456);
        map.setLong("long", 9876543210L);
        map.setFloat("float", -1.5f);
        map.setDouble("double", 2.25);
        map.setString("string", TEXT);
        map.setBytes("bytes", new byte[] {4, 5, 6});
        Map<String, Object> nestedBody = new HashMap<>();
        nestedBody.put("k", "v");
        map.setObject("nested", nestedBody);
        List<Object> listBody = new ArrayList<>();
        listBody.add(Long.valueOf(1));
        listBody.add(Boolean.FALSE);
        map.setObject("list", listBody);
        map.storeContent();
        out.put("message_map", map);

        ActiveMQStreamMessage stream = new ActiveMQStreamMessage();
        fill(stream, 17);
        stream.writeBoolean(false);
        stream.writeByte((byte) 1);
        stream.writeChar('z');
        stream.writeShort((short) 2);
        stream.writeInt(3);
        stream.writeLong(4L);
        stream.writeFloat(5.5f);
        stream.writeDouble(6.5);
        stream.writeString("seven");
        stream.writeBytes(new byte[] {8});
        stream.writeObject(null);
        stream.storeContent();
        out.put("message_stream", stream);

        ActiveMQObjectMessage object = new ActiveMQObjectMessage();
        fill(object, 18);
        object.setObject("a serialized string");
        object.storeContent();
        out.put("message_object", object);

        ActiveMQMessage advisory = new ActiveMQMessage();
        advisory.setCommandId(19);
        advisory.setDestination(new ActiveMQTopic("ActiveMQ.Advisory.Consumer.Queue.TEST.Q"));
        advisory.setDataStructure(browser);
        out.put("message_advisory", advisory);

        return out;
    }

    public static void main(String[] args) throws Exception {
        File root = new File(args.length > 0 ? args[0] : "tests/vectors");
        for (int version = 9; version <= 12; version++) {
          for (boolean tight : new boolean[] {false, true}) {
            File dir = new File(root, "v" + version + (tight ? "-tight" : ""));
            dir.mkdirs();
            for (Map.Entry<String, Object> e : commands(version).entrySet()) {
                OpenWireFormat format = new OpenWireFormat(version);
                format.setTightEncodingEnabled(tight && !e.getKey().startsWith("wireformat"));
                format.setCacheEnabled(false);
                format.setSizePrefixDisabled(false);
                format.setStackTraceEnabled(e.getKey().endsWith(".st"));
                ByteSequence bytes = format.marshal(e.getValue());
                try (FileOutputStream f = new FileOutputStream(new File(dir, e.getKey() + ".bin"))) {
                    f.write(bytes.getData(), bytes.getOffset(), bytes.getLength());
                }
            }
          }
        }
    }
}
