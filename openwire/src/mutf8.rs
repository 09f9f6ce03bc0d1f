//! Java's "modified UTF-8" (`DataOutput.writeUTF`, and ActiveMQ's `MarshallingSupport.writeUTF8`).
//!
//! It differs from UTF-8 in two ways that matter on the wire: U+0000 is written as the two bytes
//! `C0 80`, and a character outside the Basic Multilingual Plane is written as its two UTF-16
//! surrogates, three bytes each (six bytes, where UTF-8 uses four). Decoding follows
//! `DataInputStream.readUTF`: it also accepts a raw `00` byte and overlong two- and three-byte
//! forms, as Java does. A string holding an unpaired surrogate is legal in Java but cannot be a
//! Rust `String`, so it is refused.

/// The number of bytes `s` takes in modified UTF-8.
pub fn encoded_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x01..=0x7F => 1,
            0x00 | 0x80..=0x7FF => 2,
            0x800..=0xFFFF => 3,
            _ => 6,
        })
        .sum()
}

/// Appends `s` in modified UTF-8 to `out`.
pub fn encode_into(s: &str, out: &mut Vec<u8>) {
    out.reserve(encoded_len(s));
    let mut units = [0u16; 2];
    for c in s.chars() {
        for &unit in c.encode_utf16(&mut units).iter() {
            let u = u32::from(unit);
            match u {
                0x01..=0x7F => out.push(u as u8),
                0x00 | 0x80..=0x7FF => {
                    out.push(0xC0 | (u >> 6) as u8);
                    out.push(0x80 | (u & 0x3F) as u8);
                }
                _ => {
                    out.push(0xE0 | (u >> 12) as u8);
                    out.push(0x80 | ((u >> 6) & 0x3F) as u8);
                    out.push(0x80 | (u & 0x3F) as u8);
                }
            }
        }
    }
}

/// `s` in modified UTF-8.
pub fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(s, &mut out);
    out
}

/// Decodes modified UTF-8; `None` when the bytes are malformed or hold an unpaired surrogate.
pub fn decode(bytes: &[u8]) -> Option<String> {
    // The common case, plain ASCII without NUL, is the same in both encodings.
    if bytes.iter().all(|&b| b != 0 && b < 0x80) {
        return std::str::from_utf8(bytes).ok().map(str::to_owned);
    }
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let a = bytes[i];
        if a < 0x80 {
            units.push(u16::from(a));
            i += 1;
        } else if a & 0xE0 == 0xC0 {
            let b = *bytes.get(i + 1)?;
            if b & 0xC0 != 0x80 {
                return None;
            }
            units.push((u16::from(a & 0x1F) << 6) | u16::from(b & 0x3F));
            i += 2;
        } else if a & 0xF0 == 0xE0 {
            let b = *bytes.get(i + 1)?;
            let c = *bytes.get(i + 2)?;
            if b & 0xC0 != 0x80 || c & 0xC0 != 0x80 {
                return None;
            }
            units.push(
                (u16::from(a & 0x0F) << 12) | (u16::from(b & 0x3F) << 6) | u16::from(c & 0x3F),
            );
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_supplementary_characters_as_java_writes_them() {
        assert_eq!(encode("a\0b"), [0x61, 0xC0, 0x80, 0x62]);
        // U+1F600 is the surrogate pair D83D DE00, each written as three bytes.
        assert_eq!(encode("\u{1F600}"), [0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]);
        assert_eq!(encode("é€"), [0xC3, 0xA9, 0xE2, 0x82, 0xAC]);
        for s in ["", "plain", "a\0b", "\u{1F600}x", "é€\u{10FFFF}"] {
            assert_eq!(encoded_len(s), encode(s).len());
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
    }

    #[test]
    fn lenient_where_java_is_and_strict_elsewhere() {
        assert_eq!(decode(&[0x00]).as_deref(), Some("\0"));
        assert_eq!(decode(&[0xC0]), None);
        assert_eq!(
            decode(&[0xF0, 0x9F, 0x98, 0x80]),
            None,
            "4-byte UTF-8 is not modified UTF-8"
        );
        assert_eq!(decode(&[0xED, 0xA0, 0xBD]), None, "an unpaired surrogate");
    }
}
