//! The CLI's client for a running server's HTTP API (reqwest, blocking): JSON in and out, the
//! server's `{"error": "..."}` bodies turned into messages, and "could not connect" told apart
//! from "refused" so the two get different exit codes. `https://` servers are trusted through
//! the system's roots or `--ca-file`; the bearer token comes from `--token-file` or
//! `$SLOGATE_TOKEN` and is sent as a sensitive header (never printed).

use super::CliError;
use anyhow::Context as _;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The global flags that shape every client: set once by `cli::main`.
#[derive(Debug, Default, Clone)]
pub struct ClientOptions {
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

static OPTIONS: OnceLock<ClientOptions> = OnceLock::new();

pub fn configure(options: ClientOptions) {
    let _ = OPTIONS.set(options);
}

/// The token to send: the first token line of `--token-file`, else `$SLOGATE_TOKEN`.
fn token(options: &ClientOptions) -> anyhow::Result<Option<String>> {
    if let Some(path) = &options.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| anyhow::anyhow!("the token file {} holds no token", path.display()))?;
        return Ok(Some(token.to_string()));
    }
    Ok(std::env::var("SLOGATE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Client> {
        let options = OPTIONS.get().cloned().unwrap_or_default();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(310))
            .connect_timeout(Duration::from_secs(10));
        if let Some(token) = token(&options)? {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| {
                    anyhow::anyhow!("the bearer token holds characters a header cannot")
                })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("the CA file {} holds no PEM certificate", path.display())
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// `GET path` (with its query string already encoded).
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)))
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .map_err(|e| {
                let what = if e.is_connect() {
                    "cannot connect to"
                } else {
                    "no answer from"
                };
                CliError::Unreachable(format!("{what} {}: {e}", self.base))
            })?;
        let status = resp.status();
        let text = resp.text().map_err(|e| {
            CliError::Unreachable(format!("reading the answer of {}: {e}", self.base))
        })?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or(text);
            anyhow::bail!("server answered {}: {message}", status.as_u16());
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the server's answer is not JSON: {}",
                text.chars().take(200).collect::<String>()
            )
        })
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        let cases = [
            ("checkout", "checkout"),
            ("GET /cart/{id}", "GET%20%2Fcart%2F%7Bid%7D"),
            ("a&b=c", "a%26b%3Dc"),
            ("ü", "%C3%BC"),
        ];
        for (input, want) in cases {
            assert_eq!(enc(input), want, "{input}");
        }
    }

    #[test]
    fn unreachable_is_exit_4() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}/")).unwrap();
        let e = c.get("/healthz").unwrap_err();
        assert_eq!(
            super::super::exit_code(&e),
            super::super::exit::UNREACHABLE,
            "{e:#}"
        );
    }
}
