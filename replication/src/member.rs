//! What each broker publishes in its ZooKeeper member node: `key=value` lines.
//!
//! ```text
//! id=broker-b            the broker's name
//! address=10.0.0.2:61615 where its replication listener is (a master's slaves connect there)
//! role=candidate         slave | candidate | master
//! epoch=4                a master's epoch; others: the highest epoch they have seen
//! position=1200          the last record in its store
//! last_epoch=4           the epoch of that record
//! ```

use std::fmt::Write as _;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Following a master.
    Slave,
    /// No master is known: offering itself with its position.
    Candidate,
    Master,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Slave => "slave",
            Role::Candidate => "candidate",
            Role::Master => "master",
        }
    }
}

/// A member node's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberData {
    pub id: String,
    pub address: String,
    pub role: Role,
    pub epoch: u64,
    pub position: u64,
    pub last_epoch: u64,
}

impl MemberData {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = write!(
            s,
            "id={}\naddress={}\nrole={}\nepoch={}\nposition={}\nlast_epoch={}\n",
            self.id,
            self.address,
            self.role.name(),
            self.epoch,
            self.position,
            self.last_epoch
        );
        s.into_bytes()
    }

    /// Parses a member node's data; an error says what is wrong (another broker's bug, or a
    /// node someone else created under the path).
    pub fn decode(b: &[u8]) -> Result<MemberData, String> {
        let text = std::str::from_utf8(b).map_err(|_| "not UTF-8".to_owned())?;
        let (mut id, mut address, mut role, mut epoch, mut position, mut last_epoch) =
            (None, None, None, None, None, None);
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} has no '='"))?;
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}={v} is not a number"))
            };
            match k {
                "id" => id = Some(v.to_owned()),
                "address" => address = Some(v.to_owned()),
                "role" => {
                    role = Some(match v {
                        "slave" => Role::Slave,
                        "candidate" => Role::Candidate,
                        "master" => Role::Master,
                        _ => return Err(format!("unknown role {v:?}")),
                    })
                }
                "epoch" => epoch = Some(num()?),
                "position" => position = Some(num()?),
                "last_epoch" => last_epoch = Some(num()?),
                // A later version may add keys: ignored.
                _ => {}
            }
        }
        let need = |what: &str| format!("no {what}");
        Ok(MemberData {
            id: id.ok_or_else(|| need("id"))?,
            address: address.ok_or_else(|| need("address"))?,
            role: role.ok_or_else(|| need("role"))?,
            epoch: epoch.ok_or_else(|| need("epoch"))?,
            position: position.ok_or_else(|| need("position"))?,
            last_epoch: last_epoch.ok_or_else(|| need("last_epoch"))?,
        })
    }

    /// How new this member's store is: the epoch of its last record first (a deposed master's
    /// unreplicated records share a position with the new master's, not an epoch), then the
    /// position.
    pub fn newness(&self) -> (u64, u64) {
        (self.last_epoch, self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let m = MemberData {
            id: "b1".into(),
            address: "127.0.0.1:61615".into(),
            role: Role::Candidate,
            epoch: 3,
            position: 99,
            last_epoch: 2,
        };
        assert_eq!(MemberData::decode(&m.encode()), Ok(m));
        assert_eq!(
            MemberData::decode(b"id=x\naddress=a\nrole=boss\n").unwrap_err(),
            "unknown role \"boss\""
        );
        assert_eq!(
            MemberData::decode(b"id=x\naddress=a\nrole=slave\nepoch=1\nposition=2\n").unwrap_err(),
            "no last_epoch"
        );
    }
}
