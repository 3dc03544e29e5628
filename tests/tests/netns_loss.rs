//! An inference server in its own network namespace (as in a container): behind real packet
//! loss, tbd on the host must find the server's listener in that namespace and count the TCP
//! retransmits the loss causes; behind a port mapping (DNAT), `--server-port` names the port
//! the server listens on. Needs root, `ip` and `nft` (installed by `cargo xtask setup`).

use std::{path::Path, process::Command};

use tb_tests::*;

/// A network namespace with its loopback up, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Netns(name);
        ns.run("ip", &["netns", "add", &ns.0], false);
        ns.run("ip", &["link", "set", "lo", "up"], true);
        ns
    }

    /// A command run inside the namespace.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }

    /// Runs a set-up command (inside the namespace when `inside`); panics if it fails.
    fn run(&self, program: &str, args: &[&str], inside: bool) {
        let o = if inside {
            self.cmd(program).args(args).output()
        } else {
            Command::new(program).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{program}: {e} (run `cargo xtask setup`)"));
        assert!(
            o.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn profile_in(ns: &Netns, out: &Path, args: &[&str]) -> serde_json::Value {
    let o = ns
        .cmd(bin("tbctl"))
        .arg("profile")
        .args(args)
        .args(["--json", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "tbctl profile: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("summary JSON")
}

/// serve-sim inside `ns`, and its port.
fn sim_in(ns: &Netns, dir: &Path) -> (Bg, String) {
    let port_file = dir.join("sim.port");
    let mut sim = Bg::spawn(
        "serve-sim",
        ns.cmd(bin("tbctl"))
            .arg("serve-sim")
            .arg("--port-file")
            .arg(&port_file)
            .args(["--ttft", "2ms", "--itl", "2ms"]),
        &dir.join("sim.log"),
    )
    .unwrap();
    wait_for_file(&mut sim, &port_file, 30).unwrap();
    let port = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .to_owned();
    (sim, port)
}

#[test]
fn server_in_another_network_namespace_with_packet_loss() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let ns = Netns::new(format!("tb-loss-{}", std::process::id()));
    let (mut sim, port) = sim_in(&ns, d.path());
    // One in five packets from the server's port is lost on arrival: the server retransmits.
    ns.run("nft", &["add", "table", "inet", "tbloss"], true);
    ns.run(
        "nft",
        &["add chain inet tbloss in { type filter hook input priority 0; }"],
        true,
    );
    ns.run(
        "nft",
        &[&format!(
            "add rule inet tbloss in tcp sport {port} numgen random mod 5 0 drop"
        )],
        true,
    );
    let summary = profile_in(
        &ns,
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--requests",
            "10",
            "--concurrency",
            "2",
            "--max-tokens",
            "16",
            "--daemon",
            &format!("unix:{}", sock.display()),
        ],
    );
    sim.stop();
    tbd.stop();
    assert_eq!(summary["requests"]["succeeded"], 10, "{summary}");
    let k = &summary["kernel"];
    assert_eq!(k["seen_client_side"], 10, "{k}");
    assert_eq!(
        k["seen_server_side"], 10,
        "the server's listener, in its own namespace: {k}"
    );
    let dir = d.path().join(summary["run_id"].as_str().unwrap());
    assert_sides_agree(&dir.join("kernel.jsonl"));
    let o = tbctl(&["trace", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &t["retransmits"];
    assert!(
        r["server"].as_u64().unwrap() > 0,
        "the lost packets were retransmitted by the server: {r}"
    );
}

#[test]
fn server_behind_a_port_mapping_named_by_server_port() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let ns = Netns::new(format!("tb-nat-{}", std::process::id()));
    let (mut sim, port) = sim_in(&ns, d.path());
    // Port 9000 maps to the server's port, as a container's `-p 9000:PORT` does.
    ns.run("nft", &["add", "table", "ip", "tbnat"], true);
    ns.run(
        "nft",
        &["add chain ip tbnat out { type nat hook output priority -100; }"],
        true,
    );
    ns.run(
        "nft",
        &[&format!(
            "add rule ip tbnat out tcp dport 9000 dnat to 127.0.0.1:{}",
            port
        )],
        true,
    );
    let daemon = format!("unix:{}", sock.display());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            "http://127.0.0.1:9000",
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--max-tokens",
            "4",
            "--daemon",
            &daemon,
        ];
        args.extend_from_slice(extra);
        profile_in(&ns, d.path(), &args)
    };
    // Without it, tbd looks for a listener on 9000 and finds none.
    let s = run(&[]);
    assert_eq!(s["kernel"]["seen_client_side"], 4, "{}", s["kernel"]);
    assert_eq!(s["kernel"]["seen_server_side"], 0, "{}", s["kernel"]);
    let s = run(&["--server-port", &port]);
    sim.stop();
    tbd.stop();
    assert_eq!(s["kernel"]["seen_server_side"], 4, "{}", s["kernel"]);
    // Each side names the port it saw: the mapped one on the client, the server's own.
    let dir = d.path().join(s["run_id"].as_str().unwrap());
    for l in jsonl(&dir.join("kernel.jsonl")) {
        let want = if l["side"] == "client" {
            "9000"
        } else {
            &port[..]
        };
        let dst = l["conn"]["dst"].as_str().unwrap();
        assert!(dst.ends_with(&format!(":{want}")), "{l}");
    }
}
