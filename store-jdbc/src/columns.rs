//! What the columns hold and refuse: a destination's `CONTAINER` value, and the text limits
//! of ActiveMQ's `VARCHAR(250)` columns (checked before a write, so that no database silently
//! truncates or refuses a value half-way through a batch).

use store_api::{Destination, Message, Result, StoreError, SubscriptionKey};

use crate::statements::MAX_TEXT;

/// A destination's `CONTAINER` value back to the destination.
pub(crate) fn parse_container(c: &str) -> Option<Destination> {
    if let Some(n) = c.strip_prefix("queue://") {
        Some(Destination::queue(n))
    } else {
        c.strip_prefix("topic://").map(Destination::topic)
    }
}

/// Refuses text the columns cannot hold exactly.
pub(crate) fn check_text(what: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_TEXT {
        return Err(StoreError::InvalidArgument(format!(
            "{what} is longer than the {MAX_TEXT} characters its VARCHAR(250) column holds"
        )));
    }
    if s.contains('\0') {
        return Err(StoreError::InvalidArgument(format!(
            "{what} contains a NUL character, which PostgreSQL text cannot hold"
        )));
    }
    Ok(())
}

pub(crate) fn check_destination(d: &Destination) -> Result<()> {
    check_text(&format!("destination name `{d}`"), &d.to_string())
}

pub(crate) fn check_message(m: &Message, max_packet: Option<u64>) -> Result<()> {
    check_destination(&m.destination)?;
    check_text("a message's producer id", &m.id.producer)?;
    if let Some(max) = max_packet {
        // The row travels in one packet with its other columns: leave room for them.
        let size = m.size() + 2048;
        if size > max {
            return Err(StoreError::InvalidArgument(format!(
                "message {} of {} bytes does not fit the server's max_allowed_packet of {max} bytes; raise max_allowed_packet (see the README)",
                m.id,
                m.size()
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_key(k: &SubscriptionKey) -> Result<()> {
    check_text("client id", &k.client_id)?;
    check_text("subscription name", &k.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::PREPARED_CONTAINER;

    #[test]
    fn containers_round_trip() {
        for d in [Destination::queue("a://b"), Destination::topic("t")] {
            assert_eq!(parse_container(&d.to_string()), Some(d));
        }
        assert_eq!(parse_container(PREPARED_CONTAINER), None);
    }
}
