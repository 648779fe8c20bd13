//! Connections: every accepted connection is served, however many arrive at
//! once and however long the others stay open.
//!
//! tiny_http 0.12's pool handed two connections accepted back to back to one
//! woken thread; the second waited until some connection closed, which a
//! kept-alive client (wrk, a load balancer, Prometheus) never does. A liveness
//! probe stuck behind one times out. vendor/tiny_http has the fix.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::Daemon;

/// One `GET /livez` on a kept-alive connection; the status, or why not.
fn livez(conn: &mut BufReader<TcpStream>) -> Result<u16, String> {
    conn.get_mut().write_all(b"GET /livez HTTP/1.1\r\nHost: kubernary\r\n\r\n").map_err(|e| e.to_string())?;
    support::read_response(conn, false).map(|answer| answer.status).map_err(|e| format!("no answer: {e}"))
}

#[test]
fn a_burst_of_kept_alive_connections_is_served_in_full() {
    let daemon = Daemon::start(
        &["--no-stats"],
        &[("KUBERNARY_CHECKS", "port=tcp"), ("KUBERNARY_PORT_ADDRESS", "127.0.0.1:1")],
    );
    // Opened back to back, as wrk or a load balancer opens its pool.
    let mut conns: Vec<BufReader<TcpStream>> = (0..50)
        .map(|_| {
            let stream = TcpStream::connect(daemon.addr()).expect("connect");
            BufReader::new(stream)
        })
        .collect();
    // Every connection stays open; each must be answered, three times over.
    for round in 1..=3 {
        // One deadline for the round, so that a stuck connection costs it
        // once, not once per connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        let failed: Vec<String> = conns
            .iter_mut()
            .enumerate()
            .map(|(n, conn)| {
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
                conn.get_mut().set_read_timeout(Some(left)).expect("read timeout");
                (n, livez(conn))
            })
            .filter_map(|(n, answer)| match answer {
                Ok(200) => None,
                Ok(status) => Some(format!("connection {n}: {status}")),
                Err(e) => Some(format!("connection {n}: {e}")),
            })
            .collect();
        assert!(
            failed.is_empty(),
            "round {round}: {} of 50 kept-alive connections not served: {failed:?}\n{}",
            failed.len(),
            daemon.logs().join("\n")
        );
    }
}
