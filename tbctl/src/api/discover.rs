//! Finding out what a target speaks and which models it serves, from `/v1/models` (OpenAI) or
//! `/api/tags` (Ollama), so `--api` and `--model` can be left out.

use std::error::Error as _;
use std::time::Duration;

use serde::Deserialize;

use super::flavour::ApiFlavour;

/// How long one discovery request may take; discovery runs before load, so fail fast.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What discovery found: the flavour to use and the models the server lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Chat flavour of the API family the server answered for.
    pub flavour: ApiFlavour,
    /// Model names in the server's order; may be empty.
    pub models: Vec<String>,
}

/// Why discovery failed, phrased so the one-line message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// The URL cannot be turned into a request.
    #[error("invalid URL {0}: {1}; check --url")]
    InvalidUrl(String, String),
    /// No connection (refused, DNS, timeout).
    #[error("cannot reach {0}: {1}; is the server running? check --url")]
    Unreachable(String, String),
    /// A server answered, but at neither model-list path.
    #[error("{0} answers, but neither /v1/models nor /api/tags: pass --api (and --model)")]
    NotInference(String),
    /// The server refused the credentials (or their absence).
    #[error("{url} answered HTTP {status}: check --api-key")]
    Unauthorized {
        /// The model-list URL asked.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The model-list request failed with another HTTP status.
    #[error(
        "{url} answered HTTP {status}{}; check --url and the server's log",
        body_hint(body)
    )]
    Http {
        /// The model-list URL asked.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body, for the server's own explanation.
        body: String,
    },
    /// The model list was not the JSON its API documents.
    #[error(
        "{url} returned a model list that is not valid JSON ({reason}); pass --api and --model"
    )]
    BadModelList {
        /// The model-list URL asked.
        url: String,
        /// The decode error.
        reason: String,
    },
}

fn body_hint(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    }
}

/// A base URL as requests need it: with a scheme, without a trailing `/` or `/v1` (users often
/// paste the OpenAI base URL, but flavour paths already start with `/v1`).
pub fn normalize_base(base: &str) -> String {
    let mut b = base.trim().trim_end_matches('/');
    if let Some(stripped) = b.strip_suffix("/v1") {
        b = stripped.trim_end_matches('/');
    }
    if b.contains("://") {
        b.to_string()
    } else {
        format!("http://{b}")
    }
}

/// The path listing models for `flavour`'s API family.
pub fn models_path(flavour: ApiFlavour) -> &'static str {
    if flavour.is_ollama() {
        "/api/tags"
    } else {
        "/v1/models"
    }
}

/// Asks `base` which API it speaks: OpenAI (`/v1/models`) first, then Ollama (`/api/tags`).
/// Returns the chat flavour of whichever answers, with its models.
pub async fn detect(
    client: &reqwest::Client,
    base: &str,
    api_key: Option<&str>,
) -> Result<Discovery, DiscoverError> {
    let base = normalize_base(base);
    let candidates = [ApiFlavour::OpenAiChat, ApiFlavour::OllamaChat];
    for flavour in candidates {
        match fetch_models(client, &base, flavour, api_key).await {
            Ok(models) => return Ok(Discovery { flavour, models }),
            // 404, an HTML page, a JSON of another shape: not this family, try the next.
            Err(Probe::NotHere(_)) => continue,
            Err(Probe::Fatal(e)) => return Err(e),
        }
    }
    Err(DiscoverError::NotInference(base))
}

/// Lists the models `base` serves, asking the endpoint of `flavour`'s family.
pub async fn list_models(
    client: &reqwest::Client,
    base: &str,
    flavour: ApiFlavour,
    api_key: Option<&str>,
) -> Result<Vec<String>, DiscoverError> {
    let base = normalize_base(base);
    fetch_models(client, &base, flavour, api_key)
        .await
        .map_err(|p| match p {
            Probe::NotHere(e) | Probe::Fatal(e) => e,
        })
}

enum Probe {
    /// The path is missing or answers something else: the server is not of this family;
    /// the error is what [`list_models`] reports.
    NotHere(DiscoverError),
    /// Stop: the server is unreachable or refuses us, and another path will not help.
    Fatal(DiscoverError),
}

#[derive(Deserialize)]
struct OpenAiModels {
    data: Vec<OpenAiModel>,
}

#[derive(Deserialize)]
struct OpenAiModel {
    id: String,
}

#[derive(Deserialize)]
struct OllamaTags {
    models: Vec<OllamaModel>,
}

// Older Ollama builds send only `name`; newer send `model` too, with the same value. Two
// fields rather than a serde alias, which rejects a body carrying both as a duplicate.
#[derive(Deserialize)]
struct OllamaModel {
    name: Option<String>,
    model: Option<String>,
}

async fn fetch_models(
    client: &reqwest::Client,
    base: &str,
    flavour: ApiFlavour,
    api_key: Option<&str>,
) -> Result<Vec<String>, Probe> {
    let url = format!("{base}{}", models_path(flavour));
    let (status, body) = get(client, &url, api_key).await.map_err(Probe::Fatal)?;
    if status == 401 || status == 403 {
        return Err(Probe::Fatal(DiscoverError::Unauthorized { url, status }));
    }
    if !(200..300).contains(&status) {
        return Err(Probe::NotHere(DiscoverError::Http {
            url,
            status,
            body: body_excerpt(&body),
        }));
    }
    let models = if flavour.is_ollama() {
        serde_json::from_slice::<OllamaTags>(&body).map(|t| {
            t.models
                .into_iter()
                .filter_map(|m| m.name.or(m.model))
                .collect()
        })
    } else {
        serde_json::from_slice::<OpenAiModels>(&body)
            .map(|m| m.data.into_iter().map(|m| m.id).collect())
    };
    models.map_err(|e| {
        Probe::NotHere(DiscoverError::BadModelList {
            url,
            reason: e.to_string(),
        })
    })
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> Result<(u16, bytes::Bytes), DiscoverError> {
    let mut req = client.get(url).timeout(PROBE_TIMEOUT);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.map_err(|e| send_error(url, &e))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| DiscoverError::Unreachable(url.to_string(), reason(&e)))?;
    Ok((status, body))
}

fn send_error(url: &str, e: &reqwest::Error) -> DiscoverError {
    if e.is_builder() {
        DiscoverError::InvalidUrl(url.to_string(), reason(e))
    } else {
        DiscoverError::Unreachable(url.to_string(), reason(e))
    }
}

/// The most specific cause in reqwest's error chain: "connection refused" rather than
/// "error sending request for url".
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", PROBE_TIMEOUT.as_secs());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut last = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        last = Some(s);
        source = s.source();
    }
    last.map_or_else(|| e.to_string(), |s| s.to_string())
}

/// An I/O cause in words a user acts on, without the OS error number for the usual two.
fn io_reason(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => io.to_string(),
    }
}

fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-thread HTTP/1.1 responder: answers each path from `routes` (path, status, body),
    /// everything else 404. Returns the base URL; records Authorization headers it saw.
    async fn serve(
        routes: Vec<(&'static str, u16, &'static str)>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let auth = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = auth.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                for line in head.lines() {
                    if let Some((name, value)) = line.split_once(": ") {
                        if name.eq_ignore_ascii_case("authorization") {
                            seen.lock().unwrap().push(value.to_string());
                        }
                    }
                }
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, s, b)| (*s, *b))
                    .unwrap_or((404, "404 page not found"));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (base, auth)
    }

    const OPENAI_MODELS: &str = r#"{"object":"list","data":[{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","owned_by":"vllm"},{"id":"lora-a","object":"model"}]}"#;
    const OLLAMA_TAGS: &str = r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":2019393189},{"name":"qwen3:8b"}]}"#;

    #[tokio::test]
    async fn detects_openai_with_bearer_key() {
        let (base, auth) = serve(vec![("/v1/models", 200, OPENAI_MODELS)]).await;
        let client = reqwest::Client::new();
        let d = detect(&client, &format!("{base}/v1/"), Some("sk-test"))
            .await
            .unwrap();
        assert_eq!(d.flavour, ApiFlavour::OpenAiChat);
        assert_eq!(d.models, vec!["meta-llama/Llama-3.1-8B-Instruct", "lora-a"]);
        assert_eq!(*auth.lock().unwrap(), vec!["Bearer sk-test".to_string()]);
        let m = list_models(&client, &base, ApiFlavour::OpenAiCompletions, None)
            .await
            .unwrap();
        assert_eq!(m.len(), 2);
    }

    #[tokio::test]
    async fn detects_ollama_when_only_tags_answer() {
        let (base, auth) = serve(vec![("/api/tags", 200, OLLAMA_TAGS)]).await;
        let client = reqwest::Client::new();
        let d = detect(&client, &base, None).await.unwrap();
        assert_eq!(d.flavour, ApiFlavour::OllamaChat);
        assert_eq!(d.models, vec!["llama3.2:latest", "qwen3:8b"]);
        assert!(auth.lock().unwrap().is_empty());
        let e = list_models(&client, &base, ApiFlavour::OpenAiChat, None)
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoverError::Http { status: 404, .. }), "{e}");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = detect(&reqwest::Client::new(), &format!("http://{addr}"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoverError::Unreachable(..)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("cannot reach http://{addr}/v1/models: ")),
            "{msg}"
        );
        assert!(msg.contains("connection refused"), "{msg}");
        assert!(msg.ends_with("is the server running? check --url"), "{msg}");
    }

    #[tokio::test]
    async fn other_server_is_not_inference() {
        let (base, _) = serve(vec![("/v1/models", 200, "<html>hi</html>")]).await;
        let e = detect(&reqwest::Client::new(), &base, None)
            .await
            .unwrap_err();
        assert_eq!(e, DiscoverError::NotInference(base.clone()));
        assert!(e.to_string().contains("pass --api"), "{e}");
    }

    #[tokio::test]
    async fn unauthorized_stops_and_says_api_key() {
        let (base, _) = serve(vec![
            ("/v1/models", 401, r#"{"error":"Unauthorized"}"#),
            ("/api/tags", 200, OLLAMA_TAGS),
        ])
        .await;
        let e = detect(&reqwest::Client::new(), &base, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, DiscoverError::Unauthorized { status: 401, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("--api-key"));
    }

    #[tokio::test]
    async fn a_failing_model_list_says_its_status_and_the_start_of_its_body() {
        const LONG: &str = concat!(
            "{\"error\": \"model\n   not loaded\"}",
            "                                                                                ",
            "                                                                                ",
            "                                                                        tail"
        );
        let (base, _) = serve(vec![
            ("/v1/models", 500, "{\"error\": \"model\n   not loaded\"}"),
            ("/api/tags", 502, ""),
        ])
        .await;
        let client = reqwest::Client::new();
        let e = list_models(&client, &base, ApiFlavour::OpenAiChat, None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{base}/v1/models answered HTTP 500 ({{\"error\": \"model not loaded\"}}); check --url and the server's log"
            )
        );
        // No body, no parentheses.
        let e = list_models(&client, &base, ApiFlavour::OllamaChat, None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{base}/api/tags answered HTTP 502; check --url and the server's log")
        );
        // Only the first 200 bytes of a long body are quoted.
        assert!(LONG.find("tail").is_some_and(|at| at > 200));
        assert_eq!(
            body_excerpt(LONG.as_bytes()),
            "{\"error\": \"model not loaded\"}"
        );
    }

    #[test]
    fn the_usual_io_causes_read_without_their_os_numbers() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            io_reason(&Error::from(ErrorKind::TimedOut)),
            "connection timed out"
        );
        assert_eq!(
            io_reason(&Error::from(ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(io_reason(&Error::other("odd")), "odd");
    }

    #[test]
    fn normalizes_base_urls() {
        assert_eq!(normalize_base("http://h:8000/"), "http://h:8000");
        assert_eq!(normalize_base("http://h:8000/v1/"), "http://h:8000");
        assert_eq!(normalize_base("h:11434"), "http://h:11434");
        assert_eq!(normalize_base("https://x/proxy/v1"), "https://x/proxy");
    }
}
