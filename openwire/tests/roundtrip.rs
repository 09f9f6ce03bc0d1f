//! Property tests: any command or primitive map the codec can represent survives
//! encode -> decode unchanged, at every supported version, loose and tight, and re-encodes to
//! the same bytes.

use bytes::{Bytes, BytesMut};
use openwire::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any chars: NUL and supplementary characters exercise modified UTF-8.
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..32).prop_map(Bytes::from)
}

fn connection_id() -> impl Strategy<Value = ConnectionId> {
    text().prop_map(|value| ConnectionId { value })
}

fn consumer_id() -> impl Strategy<Value = ConsumerId> {
    (text(), any::<i64>(), any::<i64>()).prop_map(|(connection_id, session_id, value)| ConsumerId {
        connection_id,
        session_id,
        value,
    })
}

fn producer_id() -> impl Strategy<Value = ProducerId> {
    (text(), any::<i64>(), any::<i64>()).prop_map(|(connection_id, session_id, value)| ProducerId {
        connection_id,
        session_id,
        value,
    })
}

fn session_id() -> impl Strategy<Value = SessionId> {
    (text(), any::<i64>()).prop_map(|(connection_id, value)| SessionId {
        connection_id,
        value,
    })
}

fn destination() -> impl Strategy<Value = Destination> {
    (
        prop_oneof![
            Just(DestinationKind::Queue),
            Just(DestinationKind::Topic),
            Just(DestinationKind::TempQueue),
            Just(DestinationKind::TempTopic),
        ],
        text(),
    )
        .prop_map(|(kind, physical_name)| Destination {
            kind,
            physical_name,
        })
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (
        opt_text(),
        option::of(producer_id()),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(text_view, producer_id, producer_sequence_id, broker_sequence_id)| MessageId {
                text_view,
                producer_id,
                producer_sequence_id,
                broker_sequence_id,
            },
        )
}

fn transaction_id() -> impl Strategy<Value = TransactionId> {
    prop_oneof![
        (any::<i64>(), connection_id()).prop_map(|(value, connection_id)| {
            TransactionId::Local(LocalTransactionId {
                value,
                connection_id,
            })
        }),
        (any::<i32>(), blob(), blob()).prop_map(|(format_id, g, b)| {
            TransactionId::Xa(XaTransactionId {
                format_id,
                global_transaction_id: g,
                branch_qualifier: b,
            })
        }),
    ]
}

fn broker_ids() -> impl Strategy<Value = Option<Vec<BrokerId>>> {
    option::of(vec(text().prop_map(|value| BrokerId { value }), 0..3))
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i8>().prop_map(Value::Byte),
        any::<u16>().prop_map(Value::Char),
        any::<i16>().prop_map(Value::Short),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        (-1e30f32..1e30f32).prop_map(Value::Float),
        (-1e300f64..1e300f64).prop_map(Value::Double),
        blob().prop_map(Value::Bytes),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::List),
            vec((text(), inner), 0..4).prop_map(|entries| Value::Map(map_of(entries))),
        ]
    })
}

/// A map without duplicate keys (a map with duplicates is not a map on decode).
fn map_of(entries: Vec<(String, Value)>) -> PrimitiveMap {
    let mut map = PrimitiveMap::new();
    for (k, v) in entries {
        map.insert(k, v);
    }
    map
}

fn primitive_map() -> impl Strategy<Value = PrimitiveMap> {
    vec((text(), value()), 0..6).prop_map(map_of)
}

fn throwable() -> impl Strategy<Value = Throwable> {
    let element = (opt_text(), opt_text(), opt_text(), any::<i32>()).prop_map(
        |(class_name, method_name, file_name, line_number)| StackTraceElement {
            class_name,
            method_name,
            file_name,
            line_number,
        },
    );
    (
        opt_text(),
        opt_text(),
        vec(element, 0..3),
        option::of((opt_text(), opt_text())),
    )
        .prop_map(|(class_name, message, stack_trace, cause)| Throwable {
            class_name,
            message,
            stack_trace,
            cause: cause.map(|(class_name, message)| {
                Box::new(Throwable {
                    class_name,
                    message,
                    ..Throwable::default()
                })
            }),
        })
}

fn message() -> impl Strategy<Value = Message> {
    let kind = prop_oneof![
        Just(MessageKind::Plain),
        Just(MessageKind::Bytes),
        Just(MessageKind::Map),
        Just(MessageKind::Object),
        Just(MessageKind::Stream),
        Just(MessageKind::Text),
    ];
    let ids = (
        kind,
        any::<i32>(),
        any::<bool>(),
        option::of(producer_id()),
        option::of(destination()),
        option::of(transaction_id()),
        option::of(destination()),
        option::of(message_id()),
        option::of(transaction_id()),
    );
    let headers = (
        opt_text(),
        any::<i32>(),
        opt_text(),
        any::<bool>(),
        any::<i64>(),
        any::<i8>(),
        option::of(destination()),
        any::<i64>(),
        opt_text(),
        option::of(blob()),
        option::of(primitive_map()),
    );
    let tail = (
        option::of(consumer_id()),
        any::<bool>(),
        any::<i32>(),
        broker_ids(),
        any::<i64>(),
        opt_text(),
        any::<[bool; 3]>(),
        broker_ids(),
        any::<(i64, i64)>(),
    );
    (ids, headers, tail).prop_map(|(ids, headers, tail)| {
        let (kind, command_id, response_required, producer_id, destination, tx, orig, mid, otx) =
            ids;
        let (group_id, group_sequence, correlation_id, persistent, expiration, priority, reply_to) =
            (
                headers.0, headers.1, headers.2, headers.3, headers.4, headers.5, headers.6,
            );
        let (timestamp, jms_type, content, properties) =
            (headers.7, headers.8, headers.9, headers.10);
        let (target, compressed, redelivery_counter, broker_path, arrival, user_id, flags, cluster, times) =
            tail;
        Message {
            kind,
            command_id,
            response_required,
            producer_id,
            destination,
            transaction_id: tx,
            original_destination: orig,
            message_id: mid,
            original_transaction_id: otx,
            group_id,
            group_sequence,
            correlation_id,
            persistent,
            expiration,
            priority,
            reply_to,
            timestamp,
            jms_type,
            content,
            marshalled_properties: properties.map(|p| p.encode().expect("encodes")),
            data_structure: None,
            target_consumer_id: target,
            compressed,
            redelivery_counter,
            broker_path,
            arrival,
            user_id,
            recieved_by_df_bridge: flags[0],
            droppable: flags[1],
            cluster,
            broker_in_time: times.0,
            broker_out_time: times.1,
            jmsx_group_first_for_consumer: flags[2],
        }
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            any::<i32>(),
            connection_id(),
            opt_text(),
            opt_text(),
            opt_text(),
            broker_ids(),
            any::<[bool; 6]>(),
            opt_text()
        )
            .prop_map(
                |(
                    command_id,
                    connection_id,
                    client_id,
                    password,
                    user_name,
                    broker_path,
                    f,
                    client_ip,
                )| {
                    Command::ConnectionInfo(ConnectionInfo {
                        command_id,
                        response_required: f[0],
                        connection_id,
                        client_id,
                        password,
                        user_name,
                        broker_path,
                        broker_master_connector: f[1],
                        manageable: f[2],
                        client_master: f[3],
                        fault_tolerant: f[4],
                        failover_reconnect: f[5],
                        client_ip,
                    })
                }
            ),
        (
            consumer_id(),
            option::of(destination()),
            any::<(i32, i32, i8)>(),
            opt_text(),
            opt_text(),
            opt_text(),
            any::<[bool; 9]>(),
            option::of(vec(consumer_id(), 0..2))
        )
            .prop_map(
                |(consumer_id, destination, n, selector, client_id, subscription_name, f, path)| {
                    Command::ConsumerInfo(Box::new(ConsumerInfo {
                        command_id: n.0,
                        response_required: f[0],
                        consumer_id,
                        browser: f[1],
                        destination,
                        prefetch_size: n.0,
                        maximum_pending_message_limit: n.1,
                        dispatch_async: f[2],
                        selector,
                        client_id,
                        subscription_name,
                        no_local: f[3],
                        exclusive: f[4],
                        retroactive: f[5],
                        priority: n.2,
                        broker_path: None,
                        network_subscription: f[6],
                        optimized_acknowledge: f[7],
                        no_range_acks: f[8],
                        network_consumer_path: path,
                    }))
                }
            ),
        (
            producer_id(),
            option::of(destination()),
            broker_ids(),
            any::<(i32, bool, bool)>()
        )
            .prop_map(|(producer_id, destination, broker_path, (n, a, b))| {
                Command::ProducerInfo(ProducerInfo {
                    command_id: n,
                    response_required: a,
                    producer_id,
                    destination,
                    broker_path,
                    dispatch_async: b,
                    window_size: n,
                })
            }),
        (
            connection_id(),
            option::of(transaction_id()),
            any::<(i32, i8)>()
        )
            .prop_map(|(connection_id, transaction_id, (n, t))| {
                Command::TransactionInfo(TransactionInfo {
                    command_id: n,
                    response_required: true,
                    connection_id,
                    transaction_id,
                    transaction_type: TransactionType::from_code(t),
                })
            }),
        (
            option::of(destination()),
            option::of(transaction_id()),
            consumer_id(),
            any::<(i8, i32)>(),
            option::of(message_id()),
            option::of(message_id()),
            option::of(throwable())
        )
            .prop_map(
                |(destination, transaction_id, consumer_id, (t, n), first, last, poison)| {
                    Command::MessageAck(Box::new(MessageAck {
                        command_id: n,
                        response_required: false,
                        destination,
                        transaction_id,
                        consumer_id,
                        ack_type: AckType::from_code(t),
                        first_message_id: first,
                        last_message_id: last,
                        message_count: n,
                        poison_cause: poison,
                    }))
                }
            ),
        (
            consumer_id(),
            option::of(destination()),
            option::of(message()),
            any::<i32>()
        )
            .prop_map(|(consumer_id, destination, message, n)| {
                Command::MessageDispatch(MessageDispatch {
                    command_id: n,
                    response_required: false,
                    consumer_id,
                    destination,
                    message: message.map(Box::new),
                    redelivery_counter: n,
                })
            }),
        message().prop_map(|m| Command::Message(Box::new(m))),
        (any::<(i32, i32)>(), option::of(throwable())).prop_map(|((c, r), exception)| {
            Command::ExceptionResponse(ExceptionResponse {
                command_id: c,
                response_required: false,
                correlation_id: r,
                exception,
            })
        }),
        (any::<i32>(), option::of(vec(transaction_id(), 0..4))).prop_map(|(r, ids)| {
            Command::DataArrayResponse(DataArrayResponse {
                correlation_id: r,
                data: ids.map(|ids| ids.into_iter().map(DataStructure::TransactionId).collect()),
                ..DataArrayResponse::default()
            })
        }),
        (
            prop_oneof![
                connection_id().prop_map(RemoveTarget::Connection),
                session_id().prop_map(RemoveTarget::Session),
                consumer_id().prop_map(RemoveTarget::Consumer),
                producer_id().prop_map(RemoveTarget::Producer),
            ],
            any::<i64>()
        )
            .prop_map(|(object_id, last)| {
                Command::RemoveInfo(RemoveInfo {
                    command_id: 1,
                    response_required: true,
                    object_id,
                    last_delivered_sequence_id: last,
                })
            }),
        (any::<i32>(), option::of(primitive_map())).prop_map(|(version, props)| {
            Command::WireFormatInfo(WireFormatInfo {
                magic: openwire::wireformat::MAGIC,
                version,
                marshalled_properties: props.map(|p| p.encode().expect("encodes")),
            })
        }),
        (any::<i32>(), any::<bool>()).prop_map(|(command_id, response_required)| {
            Command::KeepAliveInfo(KeepAliveInfo {
                command_id,
                response_required,
            })
        }),
    ]
}

/// What survives at `version`: fields added in version 10 are not on a version 9 wire.
fn as_version(command: &Command, version: i32) -> Command {
    fn message_id(id: &mut Option<MessageId>) {
        if let Some(id) = id {
            id.text_view = None;
        }
    }
    fn message(m: &mut Message) {
        m.jmsx_group_first_for_consumer = false;
        message_id(&mut m.message_id);
    }
    let mut c = command.clone();
    if version >= 10 {
        return c;
    }
    match &mut c {
        Command::ConsumerInfo(info) => info.client_id = None,
        Command::MessageAck(ack) => {
            message_id(&mut ack.first_message_id);
            message_id(&mut ack.last_message_id);
        }
        Command::MessageDispatch(d) => {
            if let Some(m) = d.message.as_mut() {
                message(m);
            }
        }
        Command::Message(m) => message(m),
        _ => {}
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn commands_round_trip(command in command(), version in 9..=12i32, stack_trace: bool, tight: bool) {
        let wf = WireFormat {
            version,
            stack_trace_enabled: stack_trace,
            tight_encoding_enabled: tight,
            ..WireFormat::default()
        };
        let mut buf = BytesMut::new();
        encode(&command, &wf, &mut buf).expect("encodes");
        let bytes = buf.clone();
        let decoded = decode(&mut buf, &wf).expect("decodes").expect("a whole frame");
        prop_assert!(buf.is_empty());
        let mut want = as_version(&command, version);
        if !stack_trace {
            strip_stack_traces(&mut want);
        }
        prop_assert_eq!(&decoded, &want);
        let mut again = BytesMut::new();
        encode(&decoded, &wf, &mut again).expect("re-encodes");
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn primitive_maps_round_trip(map in primitive_map()) {
        let bytes = map.encode().expect("encodes");
        prop_assert_eq!(PrimitiveMap::decode(bytes).expect("decodes"), map);
    }

    #[test]
    fn text_bodies_round_trip(s in text()) {
        let mut m = Message::new(MessageKind::Text);
        m.set_text(Some(&s)).expect("sets");
        prop_assert_eq!(m.text(DEFAULT_MAX_INFLATED_SIZE).expect("decodes"), Some(s));
    }

    #[test]
    fn stream_bodies_round_trip(values in vec(value(), 0..6)) {
        let mut m = Message::new(MessageKind::Stream);
        m.set_stream_body(&values).expect("sets");
        prop_assert_eq!(m.stream_body(DEFAULT_MAX_INFLATED_SIZE).expect("decodes"), values);
    }
}

/// Without `StackTraceEnabled` a throwable travels as class and message only.
fn strip_stack_traces(command: &mut Command) {
    fn strip(t: &mut Option<Throwable>) {
        if let Some(t) = t {
            t.stack_trace.clear();
            t.cause = None;
        }
    }
    match command {
        Command::MessageAck(ack) => strip(&mut ack.poison_cause),
        Command::ExceptionResponse(r) => strip(&mut r.exception),
        Command::ConnectionError(e) => strip(&mut e.exception),
        _ => {}
    }
}
