//! tbd's API from a client generated from proto/ in another language: Python's grpcio, with
//! default options on the unix socket. gRPC's C core sends the socket path, percent-encoded,
//! as `:authority`; tbd must answer it (tbd/src/authority.rs) as it answers tonic.

use std::process::Command;

use serde_json::Value;
use tb_tests::*;

#[test]
fn a_stock_grpcio_client_uses_the_whole_api_over_the_unix_socket() {
    let python = std::env::var("TB_GRPC_PYTHON").unwrap_or_else(|_| {
        panic!("TB_GRPC_PYTHON is not set: run the tests with `cargo xtask test`, which installs grpcio")
    });
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "5ms", "--itl", "1ms"]).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stubs = d.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let o = Command::new(&python)
        .arg(root.join("tests/grpc/client.py"))
        .arg(&sock)
        .arg(root.join("proto"))
        .arg(&stubs)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run the grpcio client");
    sim.stop();
    tbd.stop();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert!(v["probes"].as_u64().unwrap() > 20, "{v}");
    assert_eq!(v["sensors"]["nvml"], false, "{v}");
    assert_eq!(v["listed"], true);
    assert_eq!(v["end_reason"], "stopped");
    // The three requests the Python client made while capturing, seen by the kernel.
    let ex = v["exchanges"].as_array().unwrap();
    assert_eq!(v["stopped_exchanges"].as_u64().unwrap() as usize, ex.len());
    let chats: Vec<&Value> = ex
        .iter()
        .filter(|e| e["side"] == "client" && e["path"] == "/v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 3, "{v}");
    assert!(chats.iter().all(|e| e["status"] == 200), "{v}");
    // TailExchanges streamed each of them as tbd completed it, during the capture.
    let tailed: Vec<&str> = v["tailed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        tailed
            .iter()
            .filter(|p| **p == "/v1/chat/completions")
            .count(),
        3,
        "the client side of each request (the capture names no server port): {v}"
    );
    // Errors come back as gRPC statuses the client can act on.
    assert!(
        v["energy"]
            .as_str()
            .unwrap()
            .starts_with("FAILED_PRECONDITION: no energy sensor"),
        "{v}"
    );
    assert_eq!(v["missing_run"], "NOT_FOUND");
}
