//! Wire-format negotiation: `WireFormatInfo`, the first frame each side sends, and the settings
//! both then use (ActiveMQ's `OpenWireFormat.renegotiateWireFormat` and `InactivityMonitor`).
//!
//! The frame is always loose-encoded whatever the encoding being offered: magic `ActiveMQ`, an
//! `int` version, then the options as a marshalled primitive map. Each side sends its
//! preferences; both settle on the lower version and on a feature only when both want it.

use bytes::Bytes;

use crate::data_type as t;
use crate::error::{DecodeError, EncodeError, NegotiationError};
use crate::marshal::Marshal;
use crate::primitive::{PrimitiveMap, Value};
use crate::wire::{Reader, Writer};

/// The eight bytes every `WireFormatInfo` starts with.
pub const MAGIC: [u8; 8] = *b"ActiveMQ";
/// The oldest version this codec speaks.
pub const MIN_VERSION: i32 = 9;
/// The newest version this codec speaks (what activemq-client 5.17/5.18 offers).
pub const MAX_VERSION: i32 = 12;
/// ActiveMQ's broker-side default for the largest frame (100 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 100 * 1024 * 1024;

/// The settings the codec runs with: before negotiation the defaults, after it what
/// [`negotiate`] agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFormat {
    pub version: i32,
    /// Throwables carry stack traces and causes.
    pub stack_trace_enabled: bool,
    /// Booleans as bits at the front of each frame, longs in as few bytes as they need.
    pub tight_encoding_enabled: bool,
    /// Not implemented: decoding and encoding any command but `WireFormatInfo` fails.
    pub cache_enabled: bool,
    pub tcp_no_delay_enabled: bool,
    /// The largest frame accepted or written, size prefix excluded.
    pub max_frame_size: u64,
    /// Milliseconds without a frame after which the peer is considered dead (0: never).
    pub max_inactivity_duration: i64,
    /// How long after connecting the inactivity checks start.
    pub max_inactivity_duration_initial_delay: i64,
}

impl Default for WireFormat {
    /// What a broker reads a new connection's first frame with.
    fn default() -> Self {
        WireFormat {
            version: MAX_VERSION,
            stack_trace_enabled: false,
            tight_encoding_enabled: false,
            cache_enabled: false,
            tcp_no_delay_enabled: true,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_inactivity_duration: 30_000,
            max_inactivity_duration_initial_delay: 10_000,
        }
    }
}

impl WireFormat {
    /// How often to send a `KeepAliveInfo` so the peer's read check never fires: a third of the
    /// inactivity duration, as ActiveMQ does (`None`: never).
    pub fn keep_alive_interval_ms(&self) -> Option<i64> {
        match self.max_inactivity_duration {
            d if d <= 0 => None,
            d if d > 3 => Some(d / 3),
            d => Some(d),
        }
    }
}

/// The options a `WireFormatInfo` offers, by ActiveMQ's property names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireFormatOptions {
    /// `StackTraceEnabled`
    pub stack_trace_enabled: bool,
    /// `TcpNoDelayEnabled`
    pub tcp_no_delay_enabled: bool,
    /// `SizePrefixDisabled`
    pub size_prefix_disabled: bool,
    /// `CacheEnabled`
    pub cache_enabled: bool,
    /// `CacheSize`
    pub cache_size: i32,
    /// `TightEncodingEnabled`
    pub tight_encoding_enabled: bool,
    /// `MaxInactivityDuration` (ms)
    pub max_inactivity_duration: i64,
    /// `MaxInactivityDurationInitalDelay` (ms; ActiveMQ's spelling)
    pub max_inactivity_duration_initial_delay: i64,
    /// `MaxFrameSize`
    pub max_frame_size: i64,
    /// `MaxFrameSizeEnabled` (not negotiated: each side keeps its own)
    pub max_frame_size_enabled: Option<bool>,
    /// `Host`
    pub host: Option<String>,
    /// `ProviderName`
    pub provider_name: Option<String>,
    /// `ProviderVersion`
    pub provider_version: Option<String>,
    /// `PlatformDetails`
    pub platform_details: Option<String>,
}

impl WireFormatOptions {
    /// What a broker built on this codec offers: loose encoding (cheaper to encode and decode
    /// than tight, at some bytes per frame), no marshal cache (not implemented; the client then
    /// turns it off too), stack traces on.
    pub fn broker_default() -> Self {
        WireFormatOptions {
            stack_trace_enabled: true,
            tcp_no_delay_enabled: true,
            size_prefix_disabled: false,
            cache_enabled: false,
            cache_size: 1024,
            tight_encoding_enabled: false,
            max_inactivity_duration: 30_000,
            max_inactivity_duration_initial_delay: 10_000,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE as i64,
            max_frame_size_enabled: None,
            host: None,
            provider_name: None,
            provider_version: None,
            platform_details: None,
        }
    }
}

/// The first frame on a connection, from each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFormatInfo {
    pub magic: [u8; 8],
    pub version: i32,
    /// The options as a marshalled primitive map, kept as received so that it re-encodes
    /// byte for byte; see [`WireFormatInfo::options`].
    pub marshalled_properties: Option<Bytes>,
}

impl Default for WireFormatInfo {
    fn default() -> Self {
        WireFormatInfo {
            magic: MAGIC,
            version: MAX_VERSION,
            marshalled_properties: None,
        }
    }
}

fn bool_property(map: &PrimitiveMap, name: &'static str) -> Result<bool, NegotiationError> {
    // ActiveMQ reads `Boolean.TRUE == getProperty(name)`: missing is false.
    match map.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong_type(name, "a boolean", other)),
    }
}

fn long_property(map: &PrimitiveMap, name: &'static str) -> Result<i64, NegotiationError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Long(v)) => Ok(*v),
        Some(other) => Err(wrong_type(name, "a long", other)),
    }
}

fn string_property(
    map: &PrimitiveMap,
    name: &'static str,
) -> Result<Option<String>, NegotiationError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(name, "a string", other)),
    }
}

fn wrong_type(name: &'static str, wanted: &str, found: &Value) -> NegotiationError {
    NegotiationError::BadProperty {
        name,
        reason: format!("expected {wanted}, found {found:?}"),
    }
}

impl WireFormatInfo {
    /// A `WireFormatInfo` offering `options` at `version`.
    pub fn new(version: i32, options: &WireFormatOptions) -> Result<Self, EncodeError> {
        let mut map = PrimitiveMap::new();
        map.insert("StackTraceEnabled", options.stack_trace_enabled);
        map.insert("TcpNoDelayEnabled", options.tcp_no_delay_enabled);
        map.insert("SizePrefixDisabled", options.size_prefix_disabled);
        map.insert("CacheEnabled", options.cache_enabled);
        map.insert("CacheSize", options.cache_size);
        map.insert("TightEncodingEnabled", options.tight_encoding_enabled);
        map.insert("MaxInactivityDuration", options.max_inactivity_duration);
        map.insert(
            "MaxInactivityDurationInitalDelay",
            options.max_inactivity_duration_initial_delay,
        );
        map.insert("MaxFrameSize", options.max_frame_size);
        if let Some(enabled) = options.max_frame_size_enabled {
            map.insert("MaxFrameSizeEnabled", enabled);
        }
        let strings = [
            ("Host", &options.host),
            ("ProviderName", &options.provider_name),
            ("ProviderVersion", &options.provider_version),
            ("PlatformDetails", &options.platform_details),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                map.insert(name, value.as_str());
            }
        }
        Ok(WireFormatInfo {
            magic: MAGIC,
            version,
            marshalled_properties: Some(map.encode()?),
        })
    }

    /// The raw property map.
    pub fn properties(&self) -> Result<PrimitiveMap, DecodeError> {
        match &self.marshalled_properties {
            Some(bytes) => PrimitiveMap::decode(bytes.clone()),
            None => Ok(PrimitiveMap::new()),
        }
    }

    /// The options offered, read as ActiveMQ reads them (a missing flag is false, a missing
    /// number 0).
    pub fn options(&self) -> Result<WireFormatOptions, NegotiationError> {
        let map = self
            .properties()
            .map_err(|e| NegotiationError::BadProperty {
                name: "marshalledProperties",
                reason: e.to_string(),
            })?;
        let cache_size = match map.get("CacheSize") {
            None | Some(Value::Null) => 0,
            Some(Value::Int(v)) => *v,
            Some(other) => return Err(wrong_type("CacheSize", "an int", other)),
        };
        let max_frame_size_enabled = match map.get("MaxFrameSizeEnabled") {
            None => None,
            Some(_) => Some(bool_property(&map, "MaxFrameSizeEnabled")?),
        };
        Ok(WireFormatOptions {
            stack_trace_enabled: bool_property(&map, "StackTraceEnabled")?,
            tcp_no_delay_enabled: bool_property(&map, "TcpNoDelayEnabled")?,
            size_prefix_disabled: bool_property(&map, "SizePrefixDisabled")?,
            cache_enabled: bool_property(&map, "CacheEnabled")?,
            cache_size,
            tight_encoding_enabled: bool_property(&map, "TightEncodingEnabled")?,
            max_inactivity_duration: long_property(&map, "MaxInactivityDuration")?,
            max_inactivity_duration_initial_delay: long_property(
                &map,
                "MaxInactivityDurationInitalDelay",
            )?,
            max_frame_size: long_property(&map, "MaxFrameSize")?,
            max_frame_size_enabled,
            host: string_property(&map, "Host")?,
            provider_name: string_property(&map, "ProviderName")?,
            provider_version: string_property(&map, "ProviderVersion")?,
            platform_details: string_property(&map, "PlatformDetails")?,
        })
    }

    /// Refuses a peer that is not OpenWire or too old for this codec.
    pub fn validate(&self) -> Result<(), NegotiationError> {
        if self.magic != MAGIC {
            return Err(NegotiationError::BadMagic(self.magic.to_vec()));
        }
        if self.version < MIN_VERSION {
            return Err(NegotiationError::VersionTooOld {
                version: self.version,
                minimum: MIN_VERSION,
            });
        }
        Ok(())
    }
}

/// ActiveMQ's `OpenWireFormat.min`: the smaller of two values, where a value of 0 or less means
/// "no preference" and loses to any positive one.
fn preference_min<T: PartialOrd + Default + Copy>(a: T, b: T) -> T {
    let zero = T::default();
    if (a < b && a > zero) || b <= zero {
        a
    } else {
        b
    }
}

/// The settings a broker and a client agree on, from the client's `WireFormatInfo` and the one
/// the broker sends (`preferred`): the lower version, each feature only if both want it, the
/// smaller frame limit, and for inactivity the plain minimum of the two (so 0 on either side
/// turns the check off), as ActiveMQ's `InactivityMonitor` does.
pub fn negotiate(
    client: &WireFormatInfo,
    preferred: &WireFormatInfo,
) -> Result<WireFormat, NegotiationError> {
    client.validate()?;
    let theirs = client.options()?;
    let ours = preferred.options()?;
    let version = preference_min(preferred.version, client.version).min(MAX_VERSION);
    if version < MIN_VERSION {
        return Err(NegotiationError::VersionTooOld {
            version,
            minimum: MIN_VERSION,
        });
    }
    let max_frame_size = preference_min(ours.max_frame_size, theirs.max_frame_size);
    Ok(WireFormat {
        version,
        stack_trace_enabled: theirs.stack_trace_enabled && ours.stack_trace_enabled,
        tight_encoding_enabled: theirs.tight_encoding_enabled && ours.tight_encoding_enabled,
        cache_enabled: theirs.cache_enabled && ours.cache_enabled,
        tcp_no_delay_enabled: theirs.tcp_no_delay_enabled && ours.tcp_no_delay_enabled,
        max_frame_size: u64::try_from(max_frame_size).unwrap_or(DEFAULT_MAX_FRAME_SIZE),
        max_inactivity_duration: theirs
            .max_inactivity_duration
            .min(ours.max_inactivity_duration),
        max_inactivity_duration_initial_delay: theirs
            .max_inactivity_duration_initial_delay
            .min(ours.max_inactivity_duration_initial_delay),
    })
}

impl Marshal for WireFormatInfo {
    const NAME: &'static str = "WireFormatInfo";
    fn data_type(&self) -> u8 {
        t::WIREFORMAT_INFO
    }
    fn decode_body(data_type: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        if data_type != t::WIREFORMAT_INFO {
            return Err(DecodeError::UnexpectedType {
                expected: Self::NAME,
                found: data_type,
            });
        }
        let magic_bytes = r.bytes(MAGIC.len(), "WireFormatInfo.magic")?;
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&magic_bytes);
        Ok(WireFormatInfo {
            magic,
            version: r.i32("WireFormatInfo.version")?,
            marshalled_properties: r.opt_byte_array("WireFormatInfo.marshalledProperties")?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.raw(&self.magic);
        w.i32(self.version);
        w.opt_byte_array(
            self.marshalled_properties.as_deref(),
            "WireFormatInfo.marshalledProperties",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: i32, f: impl FnOnce(&mut WireFormatOptions)) -> WireFormatInfo {
        let mut options = WireFormatOptions::broker_default();
        f(&mut options);
        WireFormatInfo::new(version, &options).expect("encodes")
    }

    #[test]
    fn a_5_17_client_against_the_broker_default() {
        let client = info(12, |o| {
            o.tight_encoding_enabled = true;
            o.cache_enabled = true;
            o.max_frame_size = i64::MAX;
            o.max_inactivity_duration = 60_000;
        });
        let broker = info(12, |_| {});
        let wf = negotiate(&client, &broker).expect("agrees");
        assert_eq!(wf.version, 12);
        assert!(!wf.tight_encoding_enabled && !wf.cache_enabled && wf.stack_trace_enabled);
        assert_eq!(wf.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(wf.max_inactivity_duration, 30_000);
        assert_eq!(wf.keep_alive_interval_ms(), Some(10_000));
    }

    #[test]
    fn lower_version_wins_and_old_or_foreign_peers_are_refused() {
        let broker = info(12, |_| {});
        assert_eq!(
            negotiate(&info(9, |_| {}), &broker).map(|w| w.version),
            Ok(9)
        );
        assert_eq!(
            negotiate(&info(8, |_| {}), &broker),
            Err(NegotiationError::VersionTooOld {
                version: 8,
                minimum: 9
            })
        );
        let mut foreign = info(12, |_| {});
        foreign.magic = *b"NotAMQ!!";
        assert!(matches!(
            negotiate(&foreign, &broker),
            Err(NegotiationError::BadMagic(_))
        ));
    }

    #[test]
    fn zero_inactivity_on_either_side_disables_the_check() {
        let client = info(12, |o| o.max_inactivity_duration = 0);
        let wf = negotiate(&client, &info(12, |_| {})).expect("agrees");
        assert_eq!(wf.keep_alive_interval_ms(), None);
    }
}
