//! Config errors name the key at fault; good configs pick the engine and locker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker::config::BrokerConfig;
use engines::{EngineKind, LockerKind};

#[test]
fn no_config_is_the_embedded_default() {
    let c = BrokerConfig::from_toml("").unwrap();
    assert_eq!(c.persistence.kind, EngineKind::Kahadb);
    assert_eq!(
        c.engine().store_directory().unwrap(),
        std::path::Path::new("data/kahadb")
    );
    assert_eq!(c.engine().locker_kind(), LockerKind::SharedFile);
    assert_eq!(c, BrokerConfig::default());
    assert_eq!(c.policy.maximum_redeliveries, 6);
    assert_eq!(c.policy.dead_letter_queue, "ActiveMQ.DLQ");
    // ActiveMQ's tempUsage default; 0 turns spooling off.
    assert_eq!(c.limits.temp_bytes, 50 << 30);
    assert_eq!(
        BrokerConfig::from_toml("[limits]\ntemp_bytes = 0\n")
            .unwrap()
            .limits
            .temp_bytes,
        0
    );
    assert!(c.policy.prioritized_messages, "by priority unless told");
    assert!(!c.transports.web_tls);
    assert_eq!(c.transports.web_session_idle_secs, 1800);
    assert_eq!(c.transports.web_max_sessions, 1000);
}

#[test]
fn a_full_config_parses() {
    let c = BrokerConfig::from_toml(
        r#"
        [broker]
        name = "b1"
        data_directory = "/var/lib/broker"
        [persistence]
        kind = "jdbc"
        [persistence.jdbc]
        url = "mysql://root@127.0.0.1:3306/test"
        table_prefix = "AMQ_"
        pool_size = 4
        [locker]
        kind = "lease"
        lease_ms = 3000
        keep_alive_ms = 1000
        [limits]
        memory_bytes = 1048576
        queue_prefetch = 10
        max_selector_nodes = 500
        [policy]
        maximum_redeliveries = 3
        expired = "discard"
        "#,
    )
    .unwrap();
    assert_eq!(c.persistence.kind, EngineKind::Jdbc);
    assert_eq!(c.engine().locker_kind(), LockerKind::Lease);
    assert_eq!(
        c.engine().locker_url(),
        Some("mysql://root@127.0.0.1:3306/test")
    );
    assert_eq!(c.engine().store_directory(), None);
    assert_eq!(c.limits.max_selector_nodes, 500);
}

#[test]
fn a_leveldb_config_parses_with_activemqs_names() {
    let c = BrokerConfig::from_toml(
        r#"
        [broker]
        data_directory = "/var/lib/broker"
        [persistence]
        kind = "leveldb"
        [persistence.leveldb]
        sync = false
        log_size = 104857600
        index_cache_size = 268435456
        index_write_buffer_size = 6291456
        verify_checksums = true
        paranoid_checks = true
        "#,
    );
    if !engines::LEVELDB_BUILT {
        let e = c.expect_err("a build without the engine refuses it");
        assert_eq!(e.key, "persistence.kind", "{e}");
        assert!(e.reason.contains("--features leveldb"), "{e}");
        return;
    }
    let c = c.unwrap();
    assert_eq!(c.persistence.kind, EngineKind::Leveldb);
    assert_eq!(c.engine().locker_kind(), LockerKind::SharedFile);
    assert_eq!(
        c.engine().store_directory(),
        Some(std::path::PathBuf::from("/var/lib/broker/leveldb"))
    );
}

/// The README's Security example: users with groups (one password hashed) and
/// `[[authorization]]` entries for queues, topics and temporary destinations.
#[test]
fn a_security_config_parses() {
    let hash = broker::users::hash_password("pw").unwrap();
    let text = format!(
        r#"
[[users]]
name = "admin"
password = "{hash}"
groups = ["admins"]
[[users]]
name = "app"
password = "secret"
groups = ["apps"]
[[authorization]]
queue = "orders.>"
read = ["apps"]
write = ["apps"]
admin = ["admins"]
[[authorization]]
topic = "prices.*"
read = ["apps"]
[[authorization]]
temporary = true
read = ["apps"]
write = ["apps"]
admin = ["apps"]
"#
    );
    let c = BrokerConfig::from_toml(&text).unwrap();
    assert_eq!(c.users[0].groups, ["admins"]);
    assert_eq!(c.authorization.len(), 3);
    assert_eq!(c.authorization[1].topic.as_deref(), Some("prices.*"));
    assert!(c.authorization[2].temporary);
    let users = c.users();
    assert!(users.authorization_enabled() && users.has_clear_text());
    assert!(users.check("admin", "pw") && !users.check("admin", "pW"));
    // Without entries: open, as before.
    assert!(
        !BrokerConfig::from_toml("")
            .unwrap()
            .users()
            .authorization_enabled()
    );
}

#[test]
fn each_bad_config_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("[broker]\nnmae = \"x\"\n", "broker.nmae", "unknown field"),
        ("[brokr]\n", "brokr", "unknown field"),
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\njournal_max_fil = 1\n",
            "persistence.kahadb.journal_max_fil",
            "unknown field",
        ),
        (
            "[persistence]\nkind = \"rocksdb\"\n",
            "persistence.kind",
            "unknown variant",
        ),
        (
            "[limits]\nmemory_bytes = \"lots\"\n",
            "limits.memory_bytes",
            "invalid type",
        ),
        (
            "[limits]\ntemp_bytes = \"50 gb\"\n",
            "limits.temp_bytes",
            "invalid type",
        ),
        (
            "[limits]\ntemp_bytes = -1\n",
            "limits.temp_bytes",
            "invalid value",
        ),
        (
            "[policy]\nmaximum_redeliveries = -1\n",
            "policy.maximum_redeliveries",
            "",
        ),
        (
            "[policy]\nprioritized_messages = \"no\"\n",
            "policy.prioritized_messages",
            "invalid type",
        ),
        (
            "[[policy.entries]]\nqueue = \"a\"\nprioritized_messages = 1\n",
            "policy.entries[0].prioritized_messages",
            "invalid type",
        ),
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\nsync = \"sometimes\"\n",
            "persistence.kahadb.sync",
            "unknown variant",
        ),
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.kahadb]\nsync_interval_ms = 100\n",
            "persistence.kahadb.sync_interval_ms",
            "periodic",
        ),
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.amq]\n",
            "persistence.amq",
            "persistence.kind is \"kahadb\"",
        ),
        (
            "[persistence]\nkind = \"jdbc\"\n",
            "persistence.jdbc.url",
            "required",
        ),
        (
            "[persistence]\nkind = \"memory\"\n[locker]\nkind = \"shared-file\"\n",
            "locker.kind",
            "file engine",
        ),
        (
            "[persistence]\nkind = \"journaled-jdbc\"\n[persistence.jdbc]\nurl = \"sqlite:x.db\"\n[locker]\nkind = \"lease\"\n",
            "locker.kind",
            "journal is local",
        ),
        ("[locker]\nkind = \"lease\"\n", "locker.url", "required"),
        (
            "[locker]\nurl = \"mysql://x/y\"\n",
            "locker.url",
            "applies only",
        ),
        (
            "[persistence]\nkind = \"jdbc\"\n[persistence.jdbc]\nurl = \"sqlite:x.db\"\n[locker]\nlease_ms = 3000\nkeep_alive_ms = 2000\n",
            "locker.keep_alive_ms",
            "third of the lease",
        ),
        (
            "[limits]\nmemory_bytes = 10\n",
            "limits.memory_bytes",
            "at least",
        ),
        (
            "[limits]\nqueue_prefetch = 0\n",
            "limits.queue_prefetch",
            "above 0",
        ),
        (
            "[limits]\nmax_selector_nodes = 0\n",
            "limits.max_selector_nodes",
            "above 0",
        ),
        (
            "[policy]\ndead_letter_queue = \" \"\n",
            "policy.dead_letter_queue",
            "empty",
        ),
        (
            "[persistence]\nkind = \"leveldb\"\n[persistence.leveldb]\nlog_sise = 1\n",
            "persistence.leveldb.log_sise",
            "unknown field",
        ),
        (
            "[persistence]\nkind = \"leveldb\"\n[persistence.leveldb]\nsync = \"always\"\n",
            "persistence.leveldb.sync",
            "invalid type",
        ),
        (
            "[persistence]\nkind = \"leveldb\"\n[persistence.leveldb]\nindex_write_buffer_size = 10\n",
            "persistence.leveldb.index_write_buffer_size",
            "at least",
        ),
        (
            "[persistence]\nkind = \"kahadb\"\n[persistence.leveldb]\n",
            "persistence.leveldb",
            "persistence.kind is \"kahadb\"",
        ),
        (
            "[transports]\nweb_tls = true\ntls_key = \"k.pem\"\n",
            "transports.tls_certificate",
            "required with transports.web_tls",
        ),
        (
            "[transports]\nweb_tls = true\ntls_certificate = \"c.pem\"\n",
            "transports.tls_key",
            "required with transports.web_tls",
        ),
        (
            "[transports]\nweb = \"\"\nweb_tls = true\ntls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n",
            "transports.web_tls",
            "the console is off",
        ),
        (
            "[transports]\nwebsocket_tls = \"127.0.0.1:0\"\ntls_key = \"k.pem\"\n",
            "transports.tls_certificate",
            "required with transports.websocket_tls",
        ),
        (
            "[transports]\nopenwire_tls = \"127.0.0.1:0\"\ntls_certificate = \"c.pem\"\n",
            "transports.tls_key",
            "required with transports.openwire_tls",
        ),
        (
            "[transports]\nopenwire_discovery = \"multicast://10.0.0.1\"\n",
            "transports.openwire_discovery",
            "not a multicast address",
        ),
        (
            "[transports]\nopenwire = \"\"\nopenwire_discovery = \"multicast://default\"\n",
            "transports.openwire_discovery",
            "needs transports.openwire",
        ),
        (
            "[[network_connectors]]\nuri = \"multicast://default:x\"\n",
            "network_connectors[0].uri",
            "is not a port",
        ),
        (
            "[transports]\nstomp_heartbeat_grace = 0.5\n",
            "transports.stomp_heartbeat_grace",
            "between 1.0 and 1000",
        ),
        (
            "[transports]\nweb_session_idle_secs = 0\n",
            "transports.web_session_idle_secs",
            "above 0",
        ),
        (
            "[transports]\nweb_max_sessions = 0\n",
            "transports.web_max_sessions",
            "above 0",
        ),
        (
            "[[users]]\nname = \"a\"\npassword = \"p\"\ngroups = \"admins\"\n",
            "users[0].groups",
            "invalid type",
        ),
        (
            "[[users]]\nname = \"a\"\npassword = \"p\"\ngroups = [\"\"]\n",
            "users[0].groups",
            "empty",
        ),
        (
            "[[users]]\nname = \"a\"\npassword = \"$argon2id$nonsense\"\n",
            "users[0].password",
            "PHC",
        ),
        (
            "[[authorization]]\nqueue = \"a\"\ntopic = \"b\"\n",
            "authorization[0]",
            "exactly one of queue, topic or temporary",
        ),
        (
            "[[authorization]]\nread = [\"g\"]\n",
            "authorization[0]",
            "exactly one of queue, topic or temporary",
        ),
        (
            "[[authorization]]\nqueue = \"a.>.b\"\n",
            "authorization[0].queue",
            "'>' may only be the last element",
        ),
        (
            "[[authorization]]\ntopic = \"\"\n",
            "authorization[0].topic",
            "empty",
        ),
        (
            "[[authorization]]\nqueue = \"a\"\nread = [\"\"]\n",
            "authorization[0].read",
            "empty",
        ),
        (
            "[[authorization]]\nqueue = \"a\"\nwrite = [\"\"]\n",
            "authorization[0].write",
            "empty",
        ),
        (
            "[[authorization]]\nqueue = \"a\"\nadmin = [\"\"]\n",
            "authorization[0].admin",
            "empty",
        ),
        (
            "[[authorization]]\nqueue = \"a\"\nwrtie = []\n",
            "authorization[0].wrtie",
            "unknown field",
        ),
        (
            "[[authorization]]\ntemporary = true\n[[authorization]]\ntemporary = true\n",
            "authorization[1].temporary",
            "only one",
        ),
        (
            "[[authorization]]\ntemporary = \"yes\"\n",
            "authorization[0].temporary",
            "invalid type",
        ),
    ];
    for (text, key, reason) in cases {
        let e = BrokerConfig::from_toml(text).expect_err(text);
        assert_eq!(&e.key, key, "{text}\n=> {e}");
        assert!(e.reason.contains(reason), "{text}\n=> {e}");
        assert!(
            e.to_string().contains(key),
            "the message names the key: {e}"
        );
    }
}

#[test]
fn a_syntax_error_gives_the_line_and_a_file_error_names_the_file() {
    let e = BrokerConfig::from_toml("[broker]\nname = \n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, "[limits]\nmemory_byte = 1\n").unwrap();
    let e = BrokerConfig::from_file(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
    assert_eq!(e.key, "limits.memory_byte");
    let e = BrokerConfig::from_file(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn the_shipped_docker_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/broker-mysql.toml");
    let c = BrokerConfig::from_file(&path).unwrap();
    assert_eq!(c.persistence.kind, EngineKind::Jdbc);
    assert_eq!(c.engine().locker_kind(), LockerKind::Lease);
}
