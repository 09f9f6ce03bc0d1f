//! The JMS selector parser and evaluator: any text parses to a selector or an error, never a
//! panic or a stack overflow; a parsed selector evaluates against a message without panicking
//! (checked arithmetic); and the node limit only ever refuses: what parses under a small limit
//! parses under the default one too.
#![no_main]

use broker_core::Selector;
use libfuzzer_sys::fuzz_target;
use store_api::{Body, Destination, Message, MessageId, Value};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let message = Message::new(
        MessageId::new("fuzz", 1),
        Destination::queue("q"),
        Body::Text("x".into()),
    )
    .with_priority(4)
    .with_property("a", Value::I64(i64::MAX))
    .with_property("b", Value::I64(i64::MIN))
    .with_property("c", Value::F64(f64::NAN))
    .with_property("s", Value::String("red".into()));
    let small = Selector::parse_limited(&text, 32);
    if let Ok(selector) = Selector::parse(&text) {
        let _ = selector.matches(&message);
    } else {
        assert!(small.is_err(), "refused by default but accepted under 32 nodes: {text}");
    }
    if let Ok(selector) = small {
        let _ = selector.matches(&message);
    }
});
