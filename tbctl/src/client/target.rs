//! The endpoint being profiled: `http://host:port[/base]`.

use std::net::SocketAddr;

use crate::client::error::ClientError;

/// A parsed target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As the user gave it, without a trailing slash.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path prefix before the API paths (e.g. `/proxy`), without a trailing slash.
    pub base_path: String,
}

impl Target {
    /// Parses `http://host[:port][/base]`. https is refused with a clear message.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let url = url.trim_end_matches('/');
        let bad = |why: &str| ClientError::BadUrl(format!("{url}: {why}"));
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(bad("https targets are not supported yet; profile the server's plain-HTTP port (e.g. behind the TLS proxy)"));
        } else {
            return Err(bad("expected http://HOST:PORT"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad("port is not a number"));
        // An IPv6 literal is bracketed: `[::1]:8000` or `[::1]`.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            match after {
                "" => (h, 80),
                _ => match after.strip_prefix(':') {
                    Some(p) => (h, port_of(p)?),
                    None => return Err(bad("expected :PORT after the bracketed host")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            url: url.to_string(),
            host: host.to_string(),
            port,
            base_path: path.to_string(),
        })
    }

    /// Resolves the host (DNS through libc, so tbd's getaddrinfo probe sees it) to the first
    /// address that accepts a connection. `localhost` is often `::1` first while servers
    /// listen on `0.0.0.0` only; every request would then be refused.
    pub async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Connect(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        first_reachable(&self.host, &addrs).await
    }

    /// Whether the target is on this host (so tbd can also time the server side).
    pub fn is_local(&self, addr: &SocketAddr) -> bool {
        addr.ip().is_loopback() || local_addrs().iter().any(|a| *a == addr.ip())
    }

    /// The host as a URL or Host header writes it: an IPv6 literal in brackets.
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port`, as a URL's authority.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }

    /// The Host header value.
    pub fn host_header(&self) -> String {
        if self.port == 80 {
            self.url_host()
        } else {
            self.authority()
        }
    }
}

/// The first of `addrs` that accepts a TCP connection (closed at once), tried in order. A
/// single address is returned untried, so that a run's kernel data holds no extra
/// connection unless the choice needed one.
async fn first_reachable(host: &str, addrs: &[SocketAddr]) -> Result<SocketAddr, ClientError> {
    if let [only] = addrs {
        return Ok(*only);
    }
    let mut errors = Vec::new();
    for a in addrs {
        match tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::TcpStream::connect(a),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(*a),
            Ok(Err(e)) => errors.push(format!("{a}: {e}")),
            Err(_) => errors.push(format!("{a}: no answer in 3 s")),
        }
    }
    Err(ClientError::Connect(if errors.is_empty() {
        format!("{host} has no address")
    } else {
        format!("cannot connect to {host} ({})", errors.join("; "))
    }))
}

/// This host's interface addresses (from /proc/net/fib_trie would be thorough; the
/// addresses the kernel reports for local routes are enough here).
fn local_addrs() -> Vec<std::net::IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.and_then(|s| s.parse().ok()) {
                out.push(ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_to_the_first_address_that_answers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // ::1 first, as many hosts order localhost, with the server on IPv4 only.
        assert_eq!(first_reachable("localhost", &[v6, v4]).await.unwrap(), v4);
        drop(l);
        let e = first_reachable("localhost", &[v6, v4])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot connect to localhost") && e.contains("127.0.0.1"),
            "{e}"
        );
        // One address: nothing to choose, no connection tried.
        assert_eq!(first_reachable("localhost", &[v6]).await.unwrap(), v6);
        let e = first_reachable("h", &[]).await.unwrap_err().to_string();
        assert!(e.contains("h has no address"), "{e}");
    }

    #[test]
    fn local_means_loopback_or_one_of_this_hosts_addresses() {
        let t = Target::parse("http://127.0.0.1:8080/").unwrap();
        let at = |ip: std::net::IpAddr| SocketAddr::new(ip, 8080);
        assert!(t.is_local(&at("127.0.0.1".parse().unwrap())));
        assert!(t.is_local(&at("::1".parse().unwrap())));
        // TEST-NET-1: never this host's.
        assert!(!t.is_local(&at("192.0.2.1".parse().unwrap())));
        let mine = local_addrs();
        let own = mine
            .iter()
            .find(|a| !a.is_loopback())
            .unwrap_or_else(|| panic!("no interface address besides loopback in {mine:?}"));
        assert!(t.is_local(&at(*own)));
        assert!(!mine.contains(&"192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn parses_hosts_ports_and_base_paths() {
        let t = Target::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.base_path.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let t = Target::parse("http://example.invalid/proxy/x").unwrap();
        assert_eq!((t.port, t.base_path.as_str()), (80, "/proxy/x"));
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        // Written back with brackets, as URLs and Host headers need them.
        assert_eq!(
            (t.authority(), t.host_header()),
            ("[::1]:9000".into(), "[::1]:9000".into())
        );
        let t = Target::parse("http://[fe80::1]/x").unwrap();
        assert_eq!((t.host_header(), t.port), ("[fe80::1]".into(), 80));
        assert_eq!(Target::parse("http://h:81").unwrap().host_header(), "h:81");
        assert!(Target::parse("http://[::1:80").is_err());
        assert!(Target::parse("http://[::1]x").is_err());
        assert!(Target::parse("https://api.example.invalid")
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!(Target::parse("localhost:8080").is_err());
        assert!(Target::parse("http://h:notaport").is_err());
    }
}
