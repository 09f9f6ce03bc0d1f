//! The stock ActiveMQ Java client as Debian installs it (`libactivemq-java`), for the tests
//! that run Java programs against the broker.

/// The client jars and what they need.
const JARS: &[&str] = &[
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

/// The client's class path, with `extra` (compiled test programs) after it when not empty.
pub fn classpath(extra: &str) -> String {
    let mut parts: Vec<String> = JARS
        .iter()
        .map(|j| format!("/usr/share/java/{j}"))
        .collect();
    if !extra.is_empty() {
        parts.push(extra.to_owned());
    }
    parts.join(":")
}
