//! Against the real llama.cpp server (CPU, SmolLM2-135M) that `cargo xtask setup` installs.

use std::path::PathBuf;

use tb_tests::*;

fn server(dir: &std::path::Path) -> LlamaServer {
    let var = |k: &str| {
        PathBuf::from(std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run the tests with `cargo xtask test`, which installs llama-server")
        }))
    };
    LlamaServer::start(
        &var("TB_LLAMA_SERVER"),
        &var("TB_LLAMA_MODEL"),
        &dir.join("llama.log"),
    )
    .expect("start llama-server")
}

#[test]
fn profiles_llama_cpp_with_usage_tokens_and_kernel_timing() {
    let d = tempfile::tempdir().unwrap();
    let llama = server(d.path());
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{}", llama.port);
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--requests",
            "6",
            "--concurrency",
            "2",
            "--max-tokens",
            "16",
            "--span-size",
            "small",
            "--daemon",
            &daemon,
        ],
    );
    tbd.stop();
    assert_eq!(summary["api"], "openai-chat");
    assert_eq!(
        summary["model"], MODEL_ALIAS,
        "the model by its alias, not its file path"
    );
    assert_eq!(summary["requests"]["succeeded"], 6, "{summary}");
    for r in records(&dir) {
        assert_eq!(r["token_source"], "usage", "{r}");
        let n = r["output_tokens"].as_u64().unwrap();
        assert!((1..=16).contains(&n));
        assert!(r["ttft_ms"].as_f64().unwrap() > 0.0);
        // llama.cpp streams one token per event after a role-only prelude (not counted); a
        // token whose text is empty (a partial UTF-8 piece) carries no content.
        let chunks = r["chunks"].as_array().unwrap().len() as u64;
        assert!(
            chunks <= n && chunks + 3 >= n,
            "{chunks} content chunks for {n} tokens: {r}"
        );
    }
    let k = &summary["kernel"];
    assert_eq!(k["seen_client_side"], 6, "{k}");
    assert_eq!(
        k["seen_server_side"], 6,
        "llama-server's side through its listening socket: {k}"
    );
    let server_lines: Vec<_> = jsonl(&dir.join("kernel.jsonl"))
        .into_iter()
        .filter(|l| l["side"] == "server")
        .collect();
    assert!(server_lines
        .iter()
        .all(|l| l["pid"].as_u64() == Some(llama.pid() as u64)));
    // The server's own time to first token (its request read to the write carrying the first
    // token) fits inside the client's, short of it only by loopback and the client's reads.
    let ttft: std::collections::HashMap<u64, f64> = records(&dir)
        .iter()
        .map(|r| {
            (
                r["request_id"].as_u64().unwrap(),
                r["ttft_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    for l in &server_lines {
        let server = l["server_ttft_ms"]
            .as_f64()
            .expect("server_ttft_ms on every server line");
        let client = ttft[&l["request_id"].as_u64().unwrap()];
        assert!(
            server > 0.0 && server <= client && client - server < 25.0,
            "server TTFT {server} ms against the client's {client} ms: {l}"
        );
    }
    // This llama-server closes a connection after a streamed response (curl sees the same), so
    // tbctl cannot reuse it: the kernel must name the server as the side that ended it.
    let by_server = jsonl(&dir.join("kernel.jsonl"))
        .iter()
        .filter(|l| l["side"] == "client" && l["conn"]["closed_by"] == "server")
        .count();
    assert!(by_server >= 1, "no connection ended by llama-server: {k}");
    assert_sides_agree(&dir.join("kernel.jsonl"));
}
