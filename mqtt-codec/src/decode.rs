//! Reading packets: "check, then parse". The fixed header is read first; a packet is parsed
//! only once all of it is buffered, and one announced over the limit is refused before that.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{PacketError, Result};
use crate::packet::{
    ConnAck, Connect, ConnectReturnCode, Packet, Publish, QoS, SubAck, SubAckCode, Subscribe,
    Unsubscribe, Will,
};
use crate::topic;

/// The remaining length at the start of `buf`: `Ok(Some((length, bytes it took)))`,
/// `Ok(None)` when more bytes are needed, an error past four bytes.
pub fn decode_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(PacketError::RemainingLengthTooLong)
}

/// Takes one packet off the front of `buf`: `Ok(None)` (nothing consumed) while it is
/// incomplete; an error for a packet over `max_packet_bytes` (the whole packet, fixed header
/// included) or one that breaks the standard. After an error the stream cannot be
/// resynchronised (the connection must close), so how much of `buf` was consumed is unspecified.
pub fn decode(buf: &mut BytesMut, max_packet_bytes: usize) -> Result<Option<Packet>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = first >> 4;
    let flags = first & 0x0f;
    if kind == 0 || kind == 15 {
        return Err(PacketError::ReservedPacketType(kind));
    }
    let Some((remaining, len_bytes)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_bytes + remaining;
    if size > max_packet_bytes {
        return Err(PacketError::TooLarge {
            size,
            limit: max_packet_bytes,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    // Split off rather than copied: a PUBLISH payload keeps pointing into the read buffer.
    let mut whole = buf.split_to(size).freeze();
    whole.advance(1 + len_bytes);
    parse(kind, flags, whole).map(Some)
}

/// The flags every type but PUBLISH must carry: 0b0010 for PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE, 0 for the rest.
fn fixed_flags(kind: u8) -> u8 {
    match kind {
        6 | 8 | 10 => 0b0010,
        _ => 0,
    }
}

fn name_of(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        _ => "DISCONNECT",
    }
}

fn parse(kind: u8, flags: u8, body: Bytes) -> Result<Packet> {
    let packet = name_of(kind);
    if kind != 3 && flags != fixed_flags(kind) {
        return Err(PacketError::ReservedFlags { packet, flags });
    }
    let mut r = Reader { buf: body, packet };
    let p = match kind {
        1 => Packet::Connect(connect(&mut r)?),
        2 => {
            let ack = r.u8("acknowledge flags")?;
            let code = r.u8("return code")?;
            if ack & !1 != 0 {
                return Err(PacketError::BadConnAck("acknowledge flags"));
            }
            let code =
                ConnectReturnCode::from_byte(code).ok_or(PacketError::BadConnAck("return code"))?;
            Packet::ConnAck(ConnAck {
                session_present: ack == 1,
                code,
            })
        }
        3 => return publish(flags, r),
        4 => Packet::PubAck(r.packet_id()?),
        5 => Packet::PubRec(r.packet_id()?),
        6 => Packet::PubRel(r.packet_id()?),
        7 => Packet::PubComp(r.packet_id()?),
        8 => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while r.buf.has_remaining() {
                let f = r.string("topic filter")?;
                topic::validate_filter(&f)?;
                let q = r.u8("requested QoS")?;
                if q & 0xfc != 0 {
                    return Err(PacketError::SubscribeReservedBits(q));
                }
                filters.push((f, QoS::from_bits(q, packet)?));
            }
            if filters.is_empty() {
                return Err(PacketError::NoTopicFilters { packet });
            }
            return Ok(Packet::Subscribe(Subscribe { packet_id, filters }));
        }
        9 => {
            let packet_id = r.packet_id()?;
            let mut codes = Vec::new();
            while r.buf.has_remaining() {
                codes.push(match r.u8("return code")? {
                    0 => SubAckCode::Granted(QoS::AtMostOnce),
                    1 => SubAckCode::Granted(QoS::AtLeastOnce),
                    2 => SubAckCode::Granted(QoS::ExactlyOnce),
                    0x80 => SubAckCode::Failure,
                    other => return Err(PacketError::BadSubAckCode(other)),
                });
            }
            return Ok(Packet::SubAck(SubAck { packet_id, codes }));
        }
        10 => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while r.buf.has_remaining() {
                let f = r.string("topic filter")?;
                topic::validate_filter(&f)?;
                filters.push(f);
            }
            if filters.is_empty() {
                return Err(PacketError::NoTopicFilters { packet });
            }
            return Ok(Packet::Unsubscribe(Unsubscribe { packet_id, filters }));
        }
        11 => Packet::UnsubAck(r.packet_id()?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        _ => Packet::Disconnect,
    };
    r.end()?;
    Ok(p)
}

fn connect(r: &mut Reader) -> Result<Connect> {
    let name = r.string("protocol name")?;
    if name != "MQTT" {
        return Err(PacketError::ProtocolName(name));
    }
    let level = r.u8("protocol level")?;
    if level != crate::PROTOCOL_LEVEL {
        return Err(PacketError::ProtocolLevel(level));
    }
    let flags = r.u8("connect flags")?;
    if flags & 1 != 0 {
        return Err(PacketError::ConnectReservedFlag);
    }
    let clean_session = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = QoS::from_bits((flags >> 3) & 0x03, "CONNECT will")?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(PacketError::WillFlagsWithoutWill);
    }
    if has_password && !has_username {
        return Err(PacketError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let topic = r.string("will topic")?;
        topic::validate_name(&topic)?;
        let payload = r.binary("will message")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = has_username.then(|| r.string("user name")).transpose()?;
    let password = has_password.then(|| r.binary("password")).transpose()?;
    Ok(Connect {
        client_id,
        clean_session,
        keep_alive,
        will,
        username,
        password,
    })
}

fn publish(flags: u8, mut r: Reader) -> Result<Packet> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0x03, "PUBLISH")?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        // [MQTT-3.3.1-2]: DUP must be 0 for QoS 0.
        return Err(PacketError::ReservedFlags {
            packet: "PUBLISH",
            flags,
        });
    }
    let topic = r.string("topic name")?;
    topic::validate_name(&topic)?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(r.packet_id()?),
    };
    Ok(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload: r.buf,
    }))
}

/// A cursor over one packet's body that names the packet and field when it runs short.
struct Reader {
    buf: Bytes,
    packet: &'static str,
}

impl Reader {
    fn need(&self, n: usize, field: &'static str) -> Result<()> {
        if self.buf.remaining() < n {
            return Err(PacketError::Truncated {
                packet: self.packet,
                field,
            });
        }
        Ok(())
    }

    fn u8(&mut self, field: &'static str) -> Result<u8> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    fn packet_id(&mut self) -> Result<u16> {
        let id = self.u16("packet id")?;
        if id == 0 {
            return Err(PacketError::ZeroPacketId {
                packet: self.packet,
            });
        }
        Ok(id)
    }

    fn binary(&mut self, field: &'static str) -> Result<Bytes> {
        let len = usize::from(self.u16(field)?);
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    fn string(&mut self, field: &'static str) -> Result<String> {
        let raw = self.binary(field)?;
        match std::str::from_utf8(&raw) {
            Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
            _ => Err(PacketError::BadUtf8 { field }),
        }
    }

    fn end(&self) -> Result<()> {
        match self.buf.remaining() {
            0 => Ok(()),
            extra => Err(PacketError::TrailingBytes {
                packet: self.packet,
                extra,
            }),
        }
    }
}
