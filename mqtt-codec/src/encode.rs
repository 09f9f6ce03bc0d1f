//! Writing packets. Encoding checks what a server could get wrong when building a packet from
//! broker data (a JMS topic name over 65535 bytes, a payload over 256 MiB) and refuses it
//! rather than writing a packet the peer cannot parse.

use bytes::{BufMut, BytesMut};

use crate::MAX_REMAINING_LENGTH;
use crate::error::{PacketError, Result};
use crate::packet::{ConnAck, Connect, Packet, Publish, QoS, SubAck, SubAckCode};

impl Packet {
    /// Appends the wire form to `out`; on error nothing is appended.
    pub fn encode(&self, out: &mut BytesMut) -> Result<()> {
        let mut body = BytesMut::new();
        let first = self.body(&mut body)?;
        if body.len() > MAX_REMAINING_LENGTH {
            return Err(PacketError::TooLarge {
                size: body.len(),
                limit: MAX_REMAINING_LENGTH,
            });
        }
        out.reserve(5 + body.len());
        out.put_u8(first);
        let mut n = body.len();
        loop {
            let mut b = (n & 0x7f) as u8;
            n >>= 7;
            if n > 0 {
                b |= 0x80;
            }
            out.put_u8(b);
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&body);
        Ok(())
    }

    /// The wire form as one buffer.
    pub fn to_bytes(&self) -> Result<bytes::Bytes> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// Writes the variable header and payload; returns the first byte of the fixed header.
    fn body(&self, b: &mut BytesMut) -> Result<u8> {
        Ok(match self {
            Packet::Connect(c) => {
                connect(c, b)?;
                0x10
            }
            Packet::ConnAck(ConnAck {
                session_present,
                code,
            }) => {
                b.put_u8(u8::from(*session_present));
                b.put_u8(*code as u8);
                0x20
            }
            Packet::Publish(p) => publish(p, b)?,
            Packet::PubAck(id) => {
                b.put_u16(*id);
                0x40
            }
            Packet::PubRec(id) => {
                b.put_u16(*id);
                0x50
            }
            Packet::PubRel(id) => {
                b.put_u16(*id);
                0x62
            }
            Packet::PubComp(id) => {
                b.put_u16(*id);
                0x70
            }
            Packet::Subscribe(s) => {
                b.put_u16(s.packet_id);
                for (f, q) in &s.filters {
                    string(b, "topic filter", f)?;
                    b.put_u8(q.bits());
                }
                0x82
            }
            Packet::SubAck(SubAck { packet_id, codes }) => {
                b.put_u16(*packet_id);
                for c in codes {
                    b.put_u8(match c {
                        SubAckCode::Granted(q) => q.bits(),
                        SubAckCode::Failure => 0x80,
                    });
                }
                0x90
            }
            Packet::Unsubscribe(u) => {
                b.put_u16(u.packet_id);
                for f in &u.filters {
                    string(b, "topic filter", f)?;
                }
                0xa2
            }
            Packet::UnsubAck(id) => {
                b.put_u16(*id);
                0xb0
            }
            Packet::PingReq => 0xc0,
            Packet::PingResp => 0xd0,
            Packet::Disconnect => 0xe0,
        })
    }
}

fn connect(c: &Connect, b: &mut BytesMut) -> Result<()> {
    string(b, "protocol name", "MQTT")?;
    b.put_u8(crate::PROTOCOL_LEVEL);
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos.bits() << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    b.put_u8(flags);
    b.put_u16(c.keep_alive);
    string(b, "client identifier", &c.client_id)?;
    if let Some(w) = &c.will {
        string(b, "will topic", &w.topic)?;
        binary(b, "will message", &w.payload)?;
    }
    if let Some(u) = &c.username {
        string(b, "user name", u)?;
    }
    if let Some(p) = &c.password {
        binary(b, "password", p)?;
    }
    Ok(())
}

fn publish(p: &Publish, b: &mut BytesMut) -> Result<u8> {
    let mut first = 0x30 | (p.qos.bits() << 1);
    if p.dup {
        first |= 0x08;
    }
    if p.retain {
        first |= 0x01;
    }
    string(b, "topic name", &p.topic)?;
    if p.qos != QoS::AtMostOnce {
        b.put_u16(p.packet_id.unwrap_or(0));
    }
    b.extend_from_slice(&p.payload);
    Ok(first)
}

fn binary(b: &mut BytesMut, field: &'static str, v: &[u8]) -> Result<()> {
    let len = u16::try_from(v.len()).map_err(|_| PacketError::FieldTooLong {
        field,
        len: v.len(),
    })?;
    b.put_u16(len);
    b.extend_from_slice(v);
    Ok(())
}

fn string(b: &mut BytesMut, field: &'static str, v: &str) -> Result<()> {
    binary(b, field, v.as_bytes())
}
