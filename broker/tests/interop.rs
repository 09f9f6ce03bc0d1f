//! The broker with a STOMP client nobody here wrote: Python's stomp.py (installed from PyPI by
//! `.ci/run`). Without it the test says SKIPPED (and fails under `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_py_send_receive_acks_transactions_and_durable_subscriptions() {
    let has_stomp = Command::new("python3")
        .args(["-c", "import stomp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_stomp {
        test_support::skip("stomp.py is not installed (pip install 'stomp.py>=8,<9')");
        return;
    }
    let b = TestBroker::start("").await;
    let port = b.server.stomp.unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/stomp_py.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stomp.py failed:\n{stdout}\n{stderr}");
    for s in [
        "send_receive",
        "client_ack",
        "transactions",
        "durable_subscription_across_client_restart",
        "numeric_selectors_on_string_headers",
        "heart_beats_keep_a_quiet_connection",
    ] {
        assert!(
            stdout.contains(&format!("OK {s}")),
            "{s} did not run:\n{stdout}\n{stderr}"
        );
    }
    b.stop().await;
}
