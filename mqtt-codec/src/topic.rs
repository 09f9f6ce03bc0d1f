//! Topic names and topic filters: the standard's validity rules (section 4.7) and matching.

use crate::error::PacketError;

/// A PUBLISH (or will) topic name: not empty, no `+` or `#`.
pub fn validate_name(topic: &str) -> Result<(), PacketError> {
    if topic.is_empty() {
        return Err(PacketError::EmptyTopic {
            field: "topic name",
        });
    }
    if topic.contains(['+', '#']) {
        return Err(PacketError::WildcardInTopicName(topic.to_owned()));
    }
    Ok(())
}

/// A SUBSCRIBE/UNSUBSCRIBE topic filter: not empty, `+` and `#` only as whole levels, `#` only
/// as the last level.
pub fn validate_filter(filter: &str) -> Result<(), PacketError> {
    if filter.is_empty() {
        return Err(PacketError::EmptyTopic {
            field: "topic filter",
        });
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "#" => levels.peek().is_none(),
            "+" => true,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return Err(PacketError::BadTopicFilter(filter.to_owned()));
        }
    }
    Ok(())
}

/// Whether a valid `filter` matches the topic name `topic`, per the standard: `+` one level,
/// `#` any number of levels including none (`a/#` matches `a`), and a filter starting with a
/// wildcard does not match a topic starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_standard() {
        for ok in [
            "a",
            "a/b",
            "+",
            "#",
            "a/+/c",
            "a/#",
            "+/+",
            "/",
            "sport/tennis/#",
        ] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "#/a"] {
            assert!(validate_filter(bad).is_err(), "{bad}");
        }
        assert!(validate_name("a/+").is_err());
        assert!(validate_name("").is_err());
        assert_eq!(validate_name("a/b"), Ok(()));
    }

    #[test]
    fn matching_follows_the_standard() {
        assert!(matches("sport/tennis/#", "sport/tennis"));
        assert!(matches("sport/#", "sport/tennis/player1"));
        assert!(matches("#", "a/b"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(!matches("a/+", "a"));
        assert!(matches("+/+", "/finance"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
    }
}
