//! An inference server in its own network namespace (as in a container): behind real packet
//! loss, tbd on the host must find the server's listener in that namespace and count the TCP
//! retransmits the loss causes; behind a port mapping (DNAT), `--server-port` names the port
//! the server listens on; with the namespace's own resolver, name lookups go over the wire.
//! Needs root, `ip` and `nft` (installed by `cargo xtask setup`).

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
    let t = trace_json(dir.to_str().unwrap(), None);
    let r = &t["retransmits"];
    assert!(
        r["server"].as_u64().unwrap() > 0,
        "the lost packets were retransmitted by the server: {r}"
    );
    // Segments that overtook a lost one, and retransmissions of what had arrived, still give
    // each side the arrival of every byte it read, once, in stream order.
    assert_arrivals_whole(&dir.join("kernel.jsonl"));
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

/// A DNS server on 127.0.0.1:53 that answers every A query with 127.0.0.1 and every other
/// type with no record; it writes `argv[1]` once it listens.
const PY_DNS: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").write("listening")
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end]:
        end += q[end] + 1
    qtype = struct.unpack(">H", q[end + 1:end + 3])[0]
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01" if qtype == 1 else b""
    head = struct.pack(">HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0)
    s.sendto(q[:2] + head + q[12:end + 5] + answer, peer)
"#;

/// A Python client (http.client) that names the server `argv[1]`: a lookup per connection.
const PY_NAMED_CLIENT: &str = r#"
import http.client, json, sys
body = json.dumps({"model": "sim-model", "stream": True, "max_tokens": 4,
                   "messages": [{"role": "user", "content": "hi"}]})
for i in range(2):
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]))
    c.request("POST", "/v1/chat/completions", body=body,
              headers={"content-type": "application/json"})
    assert c.getresponse().status == 200
    c.close()
"#;

/// `ip netns exec` puts /etc/netns/NAME/resolv.conf in place of the host's; removed on drop.
struct NsResolvConf(std::path::PathBuf);

impl Drop for NsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// glibc's resolver sends A and AAAA together (sendmmsg) on a UDP socket connected to port
/// 53 and reads both answers: tbd sees that traffic, so each lookup before a connection is a
/// wire query, not a cache hit.
#[test]
fn name_lookups_over_the_wire_are_timed_from_their_udp_traffic() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let ns = Netns::new(format!("tb-dns-{}", std::process::id()));
    let conf = NsResolvConf(Path::new("/etc/netns").join(&ns.0));
    std::fs::create_dir_all(&conf.0).unwrap();
    std::fs::write(
        conf.0.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
    )
    .unwrap();
    let ready = d.path().join("dns.ready");
    let mut dns = Bg::spawn(
        "dns",
        ns.cmd("python3").args(["-c", PY_DNS]).arg(&ready),
        &d.path().join("dns.log"),
    )
    .unwrap();
    wait_for_file(&mut dns, &ready, 30).unwrap();
    let (mut sim, port) = sim_in(&ns, d.path());
    let daemon = format!("unix:{}", sock.display());
    let o = ns
        .cmd(bin("tbctl"))
        .args(["capture", "--daemon", &daemon, "--json", "--"])
        .args(["python3", "-c", PY_NAMED_CLIENT, "inference.test", &port])
        .output()
        .unwrap();
    sim.stop();
    dns.stop();
    assert!(o.status.success(), "{}", stderr(&o));
    let run: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = trace_json(run["run_id"].as_str().unwrap(), Some(&daemon));
    tbd.stop();
    assert_eq!(t["client_exchanges"], 2, "{t}");
    assert_eq!(t["dns"]["lookups"], 2, "{}", t["dns"]);
    assert_eq!(
        t["dns"]["cache_hits"], 0,
        "each lookup's query went over the wire: {}",
        t["dns"]
    );
}
