//! External plugins (`type = "plugin"`): the Python SDK's transform and source and the
//! Rust sink and source examples, run by the real binary as separate processes.

mod counter_source;
mod sink;
mod source;
mod transform;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::venv;

/// The repository's `plugins/python` folder (the SDK and its examples).
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/python")
}

/// The test virtualenv's Python (grpcio, protobuf).
pub fn python() -> String {
    venv().join("bin/python").display().to_string()
}

/// A Rust plugin example, built by `cargo test` (or `cargo build --examples`).
pub fn example(name: &str) -> PathBuf {
    // target/debug/deps/e2e-… → target/debug/examples/<name>, built by `cargo test`.
    let exe = std::env::current_exe().expect("test binary");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    let path = debug.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (cargo build --examples)",
        path.display()
    );
    path
}

/// The ids of the processes whose parent is `parent` and whose command line holds `needle`.
pub fn children(parent: u32, needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The parent pid is the 2nd field after the parenthesised command name.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// A loopback HTTP API answering `GET /users/<id>` with `{"team":"team-<id>"}`, and 404
/// for ids ending in `7`; returns its base URL and the number of requests served.
pub fn users_api() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/users/", listener.local_addr().expect("addr"));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                // Skip the headers.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let id = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.strip_prefix("/users/"))
                    .unwrap_or("")
                    .to_string();
                let (status, body) = if id.ends_with('7') {
                    ("404 Not Found", String::from("{}"))
                } else {
                    ("200 OK", format!(r#"{{"team":"team-{id}"}}"#))
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, served)
}
