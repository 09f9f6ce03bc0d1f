//! MQTT QoS 1 publish load against any MQTT 3.1.1 broker (this one, or ActiveMQ's MQTT
//! connector), for `benches/compare-activemq.sh`:
//! `cargo run --release -p benches --example mqtt_load -- 127.0.0.1:1883 20000 8`
//! (address, messages, clients). Every message is 1 KiB; each client waits for the PUBACK of
//! one PUBLISH before sending the next (a QoS 1 publisher that waits for delivery, as
//! paho's `wait_for_publish`). So that the messages are stored at all (a topic keeps only
//! what a durable subscription needs), a cleanSession=false QoS 1 subscriber is registered
//! on the topic first, and removed at the end (a cleanSession=true CONNECT with its client id).
//! Prints `RESULT msgs_per_sec=<n> count=<n>`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{Connect, Packet, Publish, QoS, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "cmp/mqtt";
const SUBSCRIBER: &str = "mqtt-load-durable";
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: &str, id: &str, clean: bool) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut c = Client {
            s,
            buf: BytesMut::with_capacity(8192),
        };
        c.send(&Packet::Connect(Connect {
            client_id: id.into(),
            clean_session: clean,
            keep_alive: 0,
            will: None,
            username: Some("admin".into()),
            password: Some(Bytes::from_static(b"admin")),
        }))
        .await?;
        match c.recv().await? {
            Packet::ConnAck(a) if a.code == mqtt_codec::ConnectReturnCode::Accepted => Ok(c),
            other => Err(std::io::Error::other(format!("CONNECT refused: {other:?}"))),
        }
    }

    async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let bytes = p.to_bytes().map_err(std::io::Error::other)?;
        self.s.write_all(&bytes).await
    }

    async fn recv(&mut self) -> std::io::Result<Packet> {
        loop {
            if let Some(p) =
                mqtt_codec::decode(&mut self.buf, 1 << 24).map_err(std::io::Error::other)?
            {
                return Ok(p);
            }
            // Bounded: a broker that stops answering fails the row instead of hanging the run.
            let read = tokio::time::timeout(READ_TIMEOUT, self.s.read_buf(&mut self.buf))
                .await
                .map_err(|_| {
                    std::io::Error::other(format!(
                        "no answer from the broker within {READ_TIMEOUT:?}"
                    ))
                })??;
            if read == 0 {
                return Err(std::io::Error::other("the broker closed the connection"));
            }
        }
    }

    async fn disconnect(mut self) -> std::io::Result<()> {
        self.send(&Packet::Disconnect).await
    }
}

async fn publish_all(addr: String, client: usize, count: usize) -> std::io::Result<()> {
    let mut c = Client::connect(&addr, &format!("mqtt-load-{client}"), true).await?;
    let payload = Bytes::from(vec![b'x'; 1024]);
    for i in 0..count {
        let id = (i % 65535 + 1) as u16;
        c.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TOPIC.into(),
            packet_id: Some(id),
            payload: payload.clone(),
        }))
        .await?;
        match c.recv().await? {
            Packet::PubAck(got) if got == id => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "expected PUBACK {id}, got {other:?}"
                )));
            }
        }
    }
    c.disconnect().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1).max(1);

    let mut sub = Client::connect(&addr, SUBSCRIBER, false).await?;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(TOPIC.into(), QoS::AtLeastOnce)],
    }))
    .await?;
    sub.recv().await?;
    sub.disconnect().await?;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let n = count / clients + usize::from(c < count % clients);
        tasks.push(tokio::spawn(publish_all(addr.clone(), c, n)));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let secs = start.elapsed().as_secs_f64();

    // Drops the durable subscription and what it collected.
    Client::connect(&addr, SUBSCRIBER, true)
        .await?
        .disconnect()
        .await?;
    println!(
        "RESULT msgs_per_sec={:.0} count={count}",
        count as f64 / secs
    );
    Ok(())
}
