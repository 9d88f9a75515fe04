//! A durable, bounded, FIFO on-disk queue of notifications waiting to be sent, one queue per
//! destination.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Event;

/// What an outbox holds: one notification, ready to send but for its secrets (a routing key, a
/// webhook URL, a token), which the destination adds at send time.
pub trait Item:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    type Error: std::error::Error + Send + Sync + 'static;

    /// Checks the destination's documented limits before the item is queued, shortening text
    /// that is merely too long rather than losing the notification.
    fn validate(&mut self) -> Result<(), Self::Error>;
    /// What the item is about, stable across its trigger and resolve (a dedup key, an alert
    /// id): for logs and delivery records.
    fn key(&self) -> &str;
    /// `trigger`, `resolve`, `verdict`…: for logs and delivery records.
    fn action(&self) -> &str;
}

#[derive(Debug, Error)]
pub enum OutboxError {
    #[error("outbox is full ({max_pending} events pending)")]
    Full { max_pending: usize },
    #[error("invalid event: {0}")]
    Invalid(Box<dyn std::error::Error + Send + Sync>),
    #[error("outbox i/o on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One pending item and its sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry<T = Event> {
    pub seq: u64,
    /// Unix milliseconds when the item was queued.
    pub enqueued_at_ms: u64,
    pub event: T,
}

/// The file format: the item and when it was queued. No secret (see [`Item`]); for PagerDuty
/// the same shape as before other destinations existed, so queued pages survive an upgrade.
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Item")]
struct Stored<T> {
    seq: u64,
    enqueued_at_ms: u64,
    event: T,
}

/// A directory of `{seq:020}.json` files, one per pending item.
///
/// `enqueue` returns only after the file and the directory entry are fsync'd, so a caller that
/// got a sequence number may crash and the event is still sent after restart. Files are written
/// to `*.tmp` and renamed, so a crash mid-write leaves a `*.tmp` that `open` deletes, never a
/// half-written event. Pending events are mirrored in memory (bounded by `max_pending`) so
/// `peek_oldest` does no I/O.
pub struct Outbox<T = Event> {
    dir: PathBuf,
    max_pending: usize,
    /// Serializes seq allocation and file creation, so events become visible in seq order and
    /// the sender can never send seq n+1 while seq n is still being written.
    write: Mutex<u64>,
    pending: Mutex<BTreeMap<u64, OutboxEntry<T>>>,
}

impl<T: Item> Outbox<T> {
    /// Opens (creating if needed) the outbox in `dir` and recovers pending events. Leftover
    /// `*.tmp` files are deleted; a `*.json` that does not parse is renamed to `*.corrupt` and
    /// logged rather than blocking every later page.
    pub fn open(dir: impl AsRef<Path>, max_pending: usize) -> Result<Outbox<T>, OutboxError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut pending = BTreeMap::new();
        let mut changed = false;
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io_at(&path))?;
                tracing::warn!(path = %path.display(), "deleted partial outbox file left by a crash");
                changed = true;
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let parsed = fs::read(&path)
                .map_err(io_at(&path))
                .map(|bytes| serde_json::from_slice::<Stored<T>>(&bytes));
            match parsed? {
                Ok(stored) if stored.seq == seq => {
                    pending.insert(
                        seq,
                        OutboxEntry {
                            seq,
                            enqueued_at_ms: stored.enqueued_at_ms,
                            event: stored.event,
                        },
                    );
                }
                Ok(_) | Err(_) => {
                    let quarantine = path.with_extension("corrupt");
                    fs::rename(&path, &quarantine).map_err(io_at(&path))?;
                    tracing::error!(path = %quarantine.display(), "unreadable outbox file set aside");
                    changed = true;
                }
            }
        }
        if changed {
            sync_dir(&dir)?;
        }
        // Sequence numbers stay unique across restarts (delivery history is keyed by them):
        // start past both the newest pending file and the clock in microseconds, which moves on
        // even when the outbox was drained before the restart.
        let after_pending = pending.keys().next_back().map_or(0, |s| s + 1);
        let next_seq = after_pending.max(now_ms().saturating_mul(1000));
        Ok(Outbox {
            dir,
            max_pending,
            write: Mutex::new(next_seq),
            pending: Mutex::new(pending),
        })
    }

    /// Validates and durably queues an item; returns its sequence number.
    pub fn enqueue(&self, mut event: T) -> Result<u64, OutboxError> {
        event
            .validate()
            .map_err(|e| OutboxError::Invalid(Box::new(e)))?;
        let mut next_seq = self.write.lock();
        if self.pending.lock().len() >= self.max_pending {
            return Err(OutboxError::Full {
                max_pending: self.max_pending,
            });
        }
        let seq = *next_seq;
        let stored = Stored {
            seq,
            enqueued_at_ms: now_ms(),
            event,
        };
        let bytes = serde_json::to_vec(&stored).expect("event serializes");
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let path = self.dir.join(format!("{seq:020}.json"));
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(OutboxError::Io { path, source });
        }
        // The rename is durable only once the directory is; until then a crash could lose it.
        sync_dir(&self.dir)?;
        *next_seq = seq + 1;
        self.pending.lock().insert(
            seq,
            OutboxEntry {
                seq,
                enqueued_at_ms: stored.enqueued_at_ms,
                event: stored.event,
            },
        );
        Ok(seq)
    }

    /// The oldest pending event, if any.
    pub fn peek_oldest(&self) -> Option<OutboxEntry<T>> {
        self.pending
            .lock()
            .first_key_value()
            .map(|(_, e)| e.clone())
    }

    /// All pending events, oldest first.
    pub fn pending(&self) -> Vec<OutboxEntry<T>> {
        self.pending.lock().values().cloned().collect()
    }

    /// Removes a sent (or permanently rejected) event. It leaves the in-memory queue even when
    /// the delete fails, so the sender moves on; the file then makes the event go out once more
    /// after a restart, which PagerDuty absorbs by dedup key (a chat message may then show
    /// twice: at-least-once is the contract).
    pub fn ack(&self, seq: u64) -> Result<(), OutboxError> {
        if self.pending.lock().remove(&seq).is_none() {
            return Ok(());
        }
        let path = self.dir.join(format!("{seq:020}.json"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(OutboxError::Io { path, source }),
        }
        sync_dir(&self.dir)
    }

    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes creates, renames and deletes in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))
    }
    // Windows cannot open a directory as a file; its rename is durable on return.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;

    fn ev(i: usize) -> Event {
        Event::trigger(
            format!("k{i}"),
            format!("summary {i}"),
            "slogate",
            Severity::Warning,
        )
    }

    fn dedup_keys(outbox: &Outbox<Event>) -> Vec<String> {
        outbox
            .pending()
            .into_iter()
            .map(|e| e.event.dedup_key)
            .collect()
    }

    #[test]
    fn fifo_ack_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::<Event>::open(dir.path(), 10).unwrap();
        let seqs: Vec<u64> = (0..3).map(|i| outbox.enqueue(ev(i)).unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        // The file exists when enqueue returns.
        for seq in &seqs {
            assert!(dir.path().join(format!("{seq:020}.json")).exists());
        }
        assert_eq!(outbox.peek_oldest().unwrap().seq, seqs[0]);
        outbox.ack(seqs[0]).unwrap();
        outbox.ack(seqs[0]).unwrap(); // a repeated ack is harmless
        assert_eq!(dedup_keys(&outbox), ["k1", "k2"]);
        assert!(!dir.path().join(format!("{:020}.json", seqs[0])).exists());
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn bounded() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::<Event>::open(dir.path(), 2).unwrap();
        outbox.enqueue(ev(0)).unwrap();
        let second = outbox.enqueue(ev(1)).unwrap();
        assert!(matches!(
            outbox.enqueue(ev(2)),
            Err(OutboxError::Full { max_pending: 2 })
        ));
        outbox.ack(second).unwrap();
        outbox.enqueue(ev(3)).unwrap();
        assert_eq!(dedup_keys(&outbox), ["k0", "k3"]);
    }

    #[test]
    fn invalid_events_never_enter() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::<Event>::open(dir.path(), 2).unwrap();
        let err = outbox.enqueue(Event::resolve("k".repeat(300))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid event: dedup key has 300 characters, the limit is 255"
        );
        assert!(outbox.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn recovery_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let n = 25;
        let seqs: Vec<u64> = {
            let outbox = Outbox::<Event>::open(dir.path(), 100).unwrap();
            (0..n).map(|i| outbox.enqueue(ev(i)).unwrap()).collect()
        };
        // A crash mid-write leaves a temp file; an unknown file is not ours and stays.
        fs::write(dir.path().join("99999999999999999999.tmp"), b"{\"seq\":").unwrap();
        fs::write(dir.path().join("README"), b"not an event").unwrap();
        fs::write(dir.path().join("00000000000000000001.json"), b"garbage").unwrap();

        let outbox = Outbox::<Event>::open(dir.path(), 100).unwrap();
        let got: Vec<u64> = outbox.pending().iter().map(|e| e.seq).collect();
        assert_eq!(got, seqs);
        assert_eq!(
            dedup_keys(&outbox),
            (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>()
        );
        assert!(!dir.path().join("99999999999999999999.tmp").exists());
        assert!(dir.path().join("README").exists());
        assert!(dir.path().join("00000000000000000001.corrupt").exists());
        // New events queue behind the recovered ones.
        let next = outbox.enqueue(ev(n)).unwrap();
        assert!(next > *seqs.last().unwrap());
    }

    #[test]
    fn concurrent_enqueue_keeps_every_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = std::sync::Arc::new(Outbox::<Event>::open(dir.path(), 1000).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .map(|i| outbox.enqueue(ev(t * 100 + i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), 80);
        let reopened = Outbox::<Event>::open(dir.path(), 1000).unwrap();
        assert_eq!(
            reopened.pending().iter().map(|e| e.seq).collect::<Vec<_>>(),
            seqs
        );
    }
}
