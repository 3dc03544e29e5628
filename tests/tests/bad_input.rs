//! Bad input: one clear line on stderr and a non-zero exit.

use std::io::{Read, Write};

use tb_tests::*;

fn fails_with(args: &[&str], needle: &str) {
    let o = tbctl(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() <= 3,
        "one clear line (clap adds a hint line), got: {err}"
    );
}

/// tbd refuses a socket table it cannot build before it loads anything.
#[test]
fn tbd_socket_table_sizes() {
    for (arg, needle) in [
        ("1000", "power of two from 8"),
        ("4", "power of two from 8"),
        ("lots", "not a number of sockets"),
    ] {
        let o = std::process::Command::new(bin("tbd"))
            .args(["--max-sockets", arg, "--socket", "/nonexistent/tbd.sock"])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!o.status.success() && err.contains(needle), "{arg}: {err}");
        assert!(
            err.lines().filter(|l| !l.trim().is_empty()).count() <= 2,
            "{err}"
        );
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_url() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    fails_with(&["profile", "--url", &url, "--no-daemon"], "cannot reach");
}

#[test]
fn not_an_inference_server_and_unknown_api() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten().take(4) {
            let mut s = s;
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n");
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    fails_with(&["profile", "--url", &url, "--no-daemon"], "--api");
    fails_with(
        &["profile", "--url", &url, "--api", "grpc", "--no-daemon"],
        "openai-chat",
    );
}

#[test]
fn unknown_model_malformed_trace_bad_values() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, port) = start_sim("debug", d.path(), &["--ttft", "0", "--itl", "0"]).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    fails_with(
        &["profile", "--url", &url, "--model", "gpt-9", "--no-daemon"],
        "unknown model 'gpt-9'",
    );
    let bad = d.path().join("bad.csv");
    std::fs::write(
        &bad,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10,abc\n",
    )
    .unwrap();
    fails_with(
        &[
            "profile",
            "--url",
            &url,
            "--trace",
            bad.to_str().unwrap(),
            "--no-daemon",
        ],
        "line 2",
    );
    fails_with(
        &["profile", "--url", &url, "--timeout", "5x", "--no-daemon"],
        "bad duration",
    );
    fails_with(
        &["profile", "--url", &url, "--rate=-3", "--no-daemon"],
        "rate",
    );
    fails_with(
        &[
            "profile",
            "--url",
            &url,
            "--slo",
            "ttft=fast",
            "--no-daemon",
        ],
        "duration",
    );
    fails_with(
        &[
            "profile",
            "--url",
            "https://api.example.invalid",
            "--no-daemon",
        ],
        "https",
    );
    fails_with(
        &[
            "profile",
            "--url",
            &url,
            "--daemon",
            "/nonexistent/tbd.sock",
        ],
        "no tbd at",
    );
    s.stop();
}
