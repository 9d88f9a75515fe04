//! A real S3-compatible server for the tests: `s3s-fs` from crates.io, installed by
//! `scripts/test` and found through `SLOGATE_S3_SERVER`, started on a free loopback port with a
//! temporary directory and test credentials. Missing, it fails the test with what to do.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slogate_history::{S3Options, Store};

pub const ACCESS_KEY: &str = "slogate-test";
pub const SECRET_KEY: &str = "slogate-test-secret";
pub const BUCKET: &str = "history";

pub struct S3Server {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> S3Server {
        let bin = std::env::var("SLOGATE_S3_SERVER").unwrap_or_else(|_| {
            panic!(
                "SLOGATE_S3_SERVER is not set: run scripts/test, which installs s3s-fs from crates.io \
                 and exports it, or `cargo install s3s-fs --version 0.14.1 --features binary --locked` \
                 and set SLOGATE_S3_SERVER to the binary"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        // s3s-fs serves each directory under its root as a bucket.
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the S3 server {bin}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port to another test: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the S3 server {bin} did not start");
    }

    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: Some("us-east-1".to_string()),
            allow_http: true,
            credentials: Some((ACCESS_KEY.to_string(), SECRET_KEY.to_string())),
        }
    }

    /// A store under `s3://history/<prefix>`.
    pub fn store(&self, prefix: &str) -> Store {
        Store::s3(&format!("s3://{BUCKET}/{prefix}"), &self.options()).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A history root of either kind, with what keeps it alive.
pub struct Root {
    pub store: Store,
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    _server: Option<S3Server>,
}

impl Root {
    pub fn local() -> Root {
        let dir = tempfile::tempdir().unwrap();
        Root {
            store: Store::local(dir.path()),
            kind: "local",
            _dir: Some(dir),
            _server: None,
        }
    }

    pub fn s3() -> Root {
        let server = S3Server::start();
        Root {
            store: server.store("slogate/prod"),
            kind: "s3",
            _dir: None,
            _server: Some(server),
        }
    }

    /// A new store on the same root, as a restarted process would open it.
    pub fn reopen(&self) -> Store {
        match (&self._dir, &self._server) {
            (Some(dir), _) => Store::local(dir.path()),
            (_, Some(server)) => server.store("slogate/prod"),
            _ => unreachable!(),
        }
    }

    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }
}

pub fn both() -> [fn() -> Root; 2] {
    [Root::local, Root::s3]
}
