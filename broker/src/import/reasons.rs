//! Why an ActiveMQ element or attribute has no place in `broker.toml`: the words the
//! "unmapped" lines of `broker import-config` give, for the items found in ActiveMQ's shipped
//! and documented configs. Anything else gets a generic reason; it is still reported.

use roxmltree::Node;

/// The reason for an element no mapping took.
pub(crate) fn element(local: &str, n: Node) -> String {
    let r = match local {
        "managementContext" => {
            "no JMX here; the web console (transports.web) and its /metrics and JSON API instead"
        }
        "multicastNetworkConnector" | "ldapNetworkConnector" => {
            "only networkConnector (static: or multicast: discovery) is mapped; write it as a networkConnector"
        }
        "sslContext" => {
            "Java key stores are not read; convert the key and certificate to PEM (keytool -importkeystore to PKCS12, then openssl pkcs12) and set transports.tls_certificate and transports.tls_key"
        }
        "shutdownHooks" => "Spring shutdown hooks; the broker stops cleanly on SIGTERM by itself",
        "jaasAuthenticationPlugin"
        | "jaasCertificateAuthenticationPlugin"
        | "jaasDualAuthenticationPlugin" => {
            "JAAS login modules (users.properties, groups.properties, LDAP) are not read; list the users as [[users]] with their groups"
        }
        "timeStampingBrokerPlugin" => {
            "no timestamping plugin: message timestamps are the client's, and expiry is not adjusted for clock skew"
        }
        "statisticsBrokerPlugin" => {
            "no statistics plugin; the console's JSON API and /metrics give the same counters"
        }
        "loggingBrokerPlugin" => "no per-message logging plugin",
        "discardingDLQBrokerPlugin" => {
            "no plugin that drops dead letters; use [[policy.entries]] expired = \"discard\" for expired ones"
        }
        "forcePersistencyModeBrokerPlugin" => "no plugin that rewrites a message's persistence",
        "destinations" => "destinations are created on first use here; none are created at start",
        "jobSchedulerUsage" => {
            "scheduled messages are stored with the others and count against limits.store_bytes"
        }
        "import" => {
            "Spring <import> is not followed; run import-config on that file too if it configures the broker (jetty.xml's console is transports.web here)"
        }
        "bean" => {
            return match n.attribute("class") {
                Some(c) if c.ends_with("PropertyPlaceholderConfigurer") => {
                    "Spring property placeholders: the properties files it names are not read; pass each ${name} as --set name=value".to_owned()
                }
                Some(c) => format!("Spring bean {c} is not used by anything this broker maps"),
                None => "Spring bean not used by anything this broker maps".to_owned(),
            };
        }
        "dispatchPolicy" | "strictOrderDispatchPolicy" | "roundRobinDispatchPolicy" => {
            "topic dispatch order is fixed here: every subscriber gets messages in the order they were sent"
        }
        "subscriptionRecoveryPolicy" | "lastImageSubscriptionRecoveryPolicy" => {
            "no retroactive consumers: a new topic subscriber gets only messages sent after it subscribed"
        }
        "pendingQueuePolicy" | "pendingSubscriberPolicy" | "pendingDurableSubscriberPolicy" => {
            "no choice of cursor: messages are paged from the store (limits.max_page_size) within limits.memory_bytes"
        }
        "pendingMessageLimitStrategy" => {
            "no per-destination pending limit; limits.max_pending_non_durable applies to every slow topic subscriber"
        }
        "messageGroupMapFactory" => "no choice of message group map",
        "slowConsumerStrategy" => "no slow-consumer abort strategy",
        "networkBridgeFilterFactory" => "no network connectors in this broker yet",
        _ => "this broker has no equivalent setting",
    };
    r.to_owned()
}

/// The reason for an attribute of a recognised element that no mapping read.
pub(crate) fn attribute(element: &str, attr: &str) -> &'static str {
    match (element, attr) {
        (_, "useJmx") => {
            "no JMX here; the web console (transports.web) and its /metrics and JSON API instead"
        }
        (_, "enableStatistics") => "statistics are always kept (console, /metrics)",
        (_, "discoveryUri") => {
            "only the OpenWire connector is advertised (transports.openwire_discovery)"
        }
        (_, "updateClusterClients" | "rebalanceClusterClients" | "updateClusterFilter") => {
            "no broker clusters to tell clients about (no network connectors yet)"
        }
        (_, "enableAudit" | "maxAuditDepth" | "maxProducersToAudit") => {
            "no duplicate-detection audit per destination"
        }
        (_, "maxPageSize" | "queuePrefetch" | "topicPrefetch") => {
            "set for every destination here (limits.max_page_size, queue_prefetch, topic_prefetch; from the policyMap's defaultEntry), not per entry"
        }
        (_, "expireMessagesPeriod") => {
            "expiry is checked for every destination every [policy] expire_check_interval_ms (from the policyMap's defaultEntry), not per entry"
        }
        (_, "optimizedDispatch" | "lazyDispatch" | "useCache") => {
            "a dispatch or cursor tuning this broker does not have per destination"
        }
        (_, "deleteAllMessagesOnStartup") => {
            "not supported: delete the store's directory (or tables) before the start instead"
        }
        (_, "enableIndexWriteAsync") => {
            "the index is written by the checkpoint; there is no choice"
        }
        (_, "dataDirectory") => "not used by this engine",
        (_, "cleanupPeriod") => "the JDBC engine deletes acknowledged rows as it goes",
        _ => "this broker has no equivalent setting",
    }
}
