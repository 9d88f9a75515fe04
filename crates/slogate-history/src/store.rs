//! [`Store`]: where the history lives, a local directory or an `s3://bucket/prefix` URL, behind
//! one small blocking API (atomic put, get, list, delete under the root) that the writers,
//! compaction, retention, and anything else that wants to keep objects next to the history use.
//!
//! Local writes go to `<name>.tmp`, are fsynced, renamed, and the directory fsynced, so a crash
//! leaves at most a `.tmp` file that no reader lists. An S3 PUT is atomic by itself: an object is
//! either there whole or not at all. S3 calls run on a small runtime owned by the store, so the
//! blocking API can be called from any thread (a `spawn_blocking` task, a plain thread, a test);
//! the query side gets its own client registered with DataFusion.
//!
//! The store also owns the *swap lock*: queries of this process hold it shared for their whole
//! run, and compaction and retention hold it exclusively while they delete files, so a query here
//! never sees a merged file next to its inputs, nor loses a file it listed.

use std::fs::{self, File};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::execution::runtime_env::RuntimeEnv;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use url::Url;

use crate::HistoryError;
use crate::quarantine::QUARANTINE_DIR;

/// Settings of an S3-compatible endpoint. Credentials come from the standard environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) unless given
/// here; they are never logged.
#[derive(Clone, Default)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:9000` for MinIO, RustFS or s3s-fs; AWS when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// `(access key id, secret access key)`; the environment's when `None`.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One object under the root: its key relative to the root (`/`-separated) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
}

/// A history root; cheap to clone, and clones share the swap lock.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    swap: Arc<tokio::sync::RwLock<()>>,
    /// Files moved to the quarantine by [`Store::quarantine`] since this store was opened.
    quarantined: AtomicU64,
}

// One backend per store, behind the store's `Arc`: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Local {
        root: PathBuf,
    },
    S3 {
        /// `s3://bucket/prefix` as configured, for messages.
        url: String,
        /// `s3://bucket`: what DataFusion resolves the store by.
        bucket_url: Url,
        prefix: ObjectPath,
        builder: AmazonS3Builder,
        client: Arc<dyn ObjectStore>,
        rt: OwnedRuntime,
    },
}

/// A runtime that may be dropped anywhere, an async context included.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl From<&Path> for Store {
    fn from(root: &Path) -> Store {
        Store::local(root)
    }
}

impl From<PathBuf> for Store {
    fn from(root: PathBuf) -> Store {
        Store::local(root)
    }
}

impl From<&PathBuf> for Store {
    fn from(root: &PathBuf) -> Store {
        Store::local(root)
    }
}

impl From<&Store> for Store {
    fn from(store: &Store) -> Store {
        store.clone()
    }
}

/// Requests to the object store are retried with exponential backoff for this long, then the
/// error goes to the caller (whose rows stay buffered for the next flush).
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

impl Store {
    /// A local directory, created on first write.
    pub fn local(root: impl Into<PathBuf>) -> Store {
        Store::with_backend(Backend::Local { root: root.into() })
    }

    /// `s3://bucket[/prefix]` on AWS or any S3-compatible server.
    pub fn s3(url: &str, options: &S3Options) -> Result<Store, HistoryError> {
        let parsed = Url::parse(url)
            .map_err(|e| HistoryError::Config(format!("history url {url:?}: {e}")))?;
        if parsed.scheme() != "s3" {
            return Err(HistoryError::Config(format!(
                "history url {url:?}: only s3:// urls are supported (use history.dir for a local directory)"
            )));
        }
        let bucket = parsed.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(HistoryError::Config(format!(
                "history url {url:?} names no bucket"
            )));
        }
        let prefix = ObjectPath::from(parsed.path().trim_matches('/'));
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 8,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if options.allow_http {
            builder = builder.with_allow_http(true);
        }
        if let Some((id, secret)) = &options.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let client = builder
            .clone()
            .build()
            .map_err(|e| HistoryError::Config(format!("history url {url:?}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("slogate-store")
            .enable_all()
            .build()
            .map_err(|source| HistoryError::Io {
                path: PathBuf::from(url),
                source,
            })?;
        let bucket_url = Url::parse(&format!("s3://{bucket}"))
            .map_err(|e| HistoryError::Config(format!("history url {url:?}: {e}")))?;
        Ok(Store::with_backend(Backend::S3 {
            url: url.to_string(),
            bucket_url,
            prefix,
            builder,
            client: Arc::new(client),
            rt: OwnedRuntime(Some(rt)),
        }))
    }

    fn with_backend(backend: Backend) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                swap: Arc::new(tokio::sync::RwLock::new(())),
                quarantined: AtomicU64::new(0),
            }),
        }
    }

    /// The root as configured: a path or an `s3://` URL.
    pub fn describe(&self) -> String {
        match &self.inner.backend {
            Backend::Local { root } => root.display().to_string(),
            Backend::S3 { url, .. } => url.clone(),
        }
    }

    /// The local root, when the store is a directory.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.inner.backend {
            Backend::Local { root } => Some(root),
            Backend::S3 { .. } => None,
        }
    }

    /// The lock queries hold shared and file swaps hold exclusively.
    pub fn swap_lock(&self) -> Arc<tokio::sync::RwLock<()>> {
        self.inner.swap.clone()
    }

    /// Writes `bytes` under `key` so that readers see all of it or nothing.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), HistoryError> {
        match &self.inner.backend {
            Backend::Local { root } => put_local(root, key, &bytes),
            Backend::S3 {
                client, prefix, rt, ..
            } => {
                let (client, path) = (client.clone(), join(prefix, key));
                run(rt, async move {
                    client.put(&path, PutPayload::from(bytes)).await
                })
                .and_then(|r| r.map_err(|e| store_error("put", key, e)))
                .map(|_| ())
            }
        }
    }

    /// The object under `key`, or `None` when there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        match &self.inner.backend {
            Backend::Local { root } => match fs::read(root.join(key)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(HistoryError::Io {
                    path: root.join(key),
                    source,
                }),
            },
            Backend::S3 {
                client, prefix, rt, ..
            } => {
                let (client, path) = (client.clone(), join(prefix, key));
                let got = run(rt, async move {
                    match client.get(&path).await {
                        Ok(r) => r.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?;
                got.map(|b| b.map(|b| b.to_vec()))
                    .map_err(|e| store_error("get", key, e))
            }
        }
    }

    /// Every object whose key starts with `prefix/` (recursively), sorted by key. Local
    /// directories that are not there list as empty.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, HistoryError> {
        let mut out = match &self.inner.backend {
            Backend::Local { root } => {
                let mut out = Vec::new();
                list_local(root, &root.join(prefix), &mut out)?;
                out
            }
            Backend::S3 {
                client,
                prefix: root,
                rt,
                ..
            } => {
                let (client, path, root) = (client.clone(), join(root, prefix), root.clone());
                let listed = run(rt, async move {
                    client.list(Some(&path)).try_collect::<Vec<_>>().await
                })?
                .map_err(|e| store_error("list", prefix, e))?;
                let skip = if root.as_ref().is_empty() {
                    0
                } else {
                    root.as_ref().len() + 1
                };
                listed
                    .into_iter()
                    .map(|m| ObjectEntry {
                        key: m
                            .location
                            .as_ref()
                            .get(skip..)
                            .unwrap_or_default()
                            .to_string(),
                        size: m.size,
                    })
                    .collect()
            }
        };
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes `key`; deleting what is not there succeeds, so every deleting step can be re-run.
    pub fn delete(&self, key: &str) -> Result<(), HistoryError> {
        match &self.inner.backend {
            Backend::Local { root } => {
                let path = root.join(key);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(HistoryError::Io { path, source }),
                }
                remove_empty_parents(root, &path);
                Ok(())
            }
            Backend::S3 {
                client, prefix, rt, ..
            } => {
                let (client, path) = (client.clone(), join(prefix, key));
                match run(rt, async move { client.delete(&path).await })? {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(store_error("delete", key, e)),
                }
            }
        }
    }

    /// Moves an unreadable file out of the tables to `quarantine/<key>` (a rename on a local
    /// root, a copy and a delete on S3), logs it with `reason` and counts it. Returns the key it
    /// was moved to. A file that is gone already is not counted.
    pub fn quarantine(&self, key: &str, reason: &str) -> Result<Option<String>, HistoryError> {
        let to = format!("{QUARANTINE_DIR}/{}", key.trim_start_matches('/'));
        let moved = match &self.inner.backend {
            Backend::Local { root } => {
                let (from, dest) = (root.join(key), root.join(&to));
                if let Some(dir) = dest.parent() {
                    fs::create_dir_all(dir).map_err(|source| HistoryError::Io {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                match fs::rename(&from, &dest) {
                    Ok(()) => {
                        remove_empty_parents(root, &from);
                        true
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    Err(source) => return Err(HistoryError::Io { path: from, source }),
                }
            }
            Backend::S3 {
                client, prefix, rt, ..
            } => {
                let (client, from, dest) = (client.clone(), join(prefix, key), join(prefix, &to));
                match run(rt, async move { client.rename(&from, &dest).await })? {
                    Ok(()) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(store_error("quarantine", key, e)),
                }
            }
        };
        if !moved {
            return Ok(None);
        }
        self.inner.quarantined.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            key = %key,
            root = %self.describe(),
            moved_to = %to,
            reason = %reason,
            "unreadable history file moved to quarantine"
        );
        Ok(Some(to))
    }

    /// Files this store (and its clones) moved to the quarantine since it was opened: for a
    /// `/metrics` counter.
    pub fn quarantined_files(&self) -> u64 {
        self.inner.quarantined.load(Ordering::Relaxed)
    }

    /// Makes the store readable by DataFusion sessions on `runtime` and returns the URL of
    /// `table`'s directory (ending with `/`) to register a listing table on.
    pub(crate) fn register_table_url(
        &self,
        runtime: &RuntimeEnv,
        table: &str,
    ) -> Result<String, HistoryError> {
        match &self.inner.backend {
            Backend::Local { root } => {
                let dir = root.join(table);
                fs::create_dir_all(&dir).map_err(|source| HistoryError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let dir = fs::canonicalize(&dir).map_err(|source| HistoryError::Io {
                    path: dir.clone(),
                    source,
                })?;
                Ok(format!("{}/", dir.display()))
            }
            Backend::S3 {
                url,
                bucket_url,
                prefix,
                builder,
                ..
            } => {
                // A client of its own: the store's runs on the store's runtime, queries run on
                // the caller's.
                let client = builder
                    .clone()
                    .build()
                    .map_err(|e| HistoryError::Config(format!("history url {url:?}: {e}")))?;
                runtime.register_object_store(bucket_url, Arc::new(client));
                Ok(format!(
                    "{}/{}/",
                    bucket_url.as_str().trim_end_matches('/'),
                    join(prefix, table)
                ))
            }
        }
    }
}

fn join(prefix: &ObjectPath, key: &str) -> ObjectPath {
    let key = key.trim_matches('/');
    if prefix.as_ref().is_empty() {
        ObjectPath::from(key)
    } else if key.is_empty() {
        prefix.clone()
    } else {
        ObjectPath::from(format!("{prefix}/{key}"))
    }
}

fn store_error(op: &'static str, key: &str, source: object_store::Error) -> HistoryError {
    HistoryError::Store {
        op,
        key: key.to_string(),
        source: Box::new(source),
    }
}

/// Runs `fut` on the store's runtime and waits for it without entering a runtime here, so it
/// works from async and blocking contexts alike.
fn run<T: Send + 'static>(
    rt: &OwnedRuntime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, HistoryError> {
    let rt = rt
        .0
        .as_ref()
        .ok_or_else(|| HistoryError::Config("the object store runtime is shut down".to_string()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        HistoryError::Config("an object store request was abandoned (runtime stopped)".to_string())
    })
}

/// Removes the now empty partition directories above a removed file, up to but not including
/// the table directory, which readers have registered (best effort: a writer may just be adding
/// a file, in which case the directory is not empty and stays).
fn remove_empty_parents(root: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir {
        let top = d == root || d.parent() == Some(root);
        if top || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

fn put_local(root: &Path, key: &str, bytes: &[u8]) -> Result<(), HistoryError> {
    let path = root.join(key);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HistoryError::Io { path, source }
    };
    create_dir_durable(&dir).map_err(io(&dir))?;
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        use std::io::Write;
        let mut file = File::create_new(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its missing parents, fsyncing the parent of each directory it creates:
/// a new partition's directory entry must be as durable as the file renamed into it, or a
/// power loss could take the file with it.
fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    loop {
        match fs::metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(d);
                match d.parent() {
                    Some(p) if !p.as_os_str().is_empty() => d = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

fn list_local(root: &Path, dir: &Path, out: &mut Vec<ObjectEntry>) -> Result<(), HistoryError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(HistoryError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| HistoryError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Deleted between the listing and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(HistoryError::Io { path, source }),
        };
        if meta.is_dir() {
            list_local(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(ObjectEntry {
                key,
                size: meta.len(),
            });
        }
    }
    Ok(())
}
