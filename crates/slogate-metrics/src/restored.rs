//! What the store knows of the time before it started: the history's per-slot totals of each
//! stream, read back at start ([`MetricStore::restore`]), so that a window reaching back before
//! a restart is answered from them and the points since, instead of from the points since only.
//!
//! Restored slots are whole slots that ended by the store's start; a window takes those that
//! start inside it (histogram windows are whole slots too). What per-slot totals keep adds up
//! exactly with the live points: counts, sums, increases, min, max, the last value and the
//! sketches. Time in a state and transitions need the points: over a window that reaches a
//! restored slot they have no value (the sentence says when they will again), never a value
//! from the points since the restart alone.

use crate::query::SlotTotals;
use crate::store::{MetricStore, NS};
use crate::stream::StreamKey;
use slogate_core::{MAX_EXTRA_DIMS, MetricPoint, MetricSlotRecord, PointValue};
use std::collections::HashMap;

/// One restored slot of one stream (a history row without its stream's identity): its totals,
/// ending at its last point's time as a live stream's do, and its encoded sketch (histograms;
/// empty otherwise).
#[derive(Debug)]
pub(crate) struct RestoredSlot {
    pub totals: SlotTotals,
    pub sketch: Box<[u8]>,
}

/// The restored slots of one stream, oldest first.
#[derive(Debug)]
pub(crate) struct RestoredStream {
    pub key: StreamKey,
    pub kind: String,
    pub unit: String,
    pub slots: Vec<RestoredSlot>,
}

impl RestoredStream {
    /// The slots that start at or after `ws`.
    pub fn in_window(&self, ws: u64) -> &[RestoredSlot] {
        let lo = self.slots.partition_point(|s| s.totals.start < ws);
        &self.slots[lo..]
    }
}

/// The restored streams, by packed key, and by `(service, metric)` for queries.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// The store's start: every restored slot ended by then.
    pub until_ns: u64,
    /// When the slot budget left rows out: the start of the newest slot not wholly restored.
    /// A window reaching back to it is missing data, and says so.
    pub cut_ns: Option<u64>,
    pub streams: HashMap<Box<[u8]>, RestoredStream>,
    pub by_metric: HashMap<(String, String), Vec<Box<[u8]>>>,
}

impl Restored {
    /// When a window from `ws` reaches back to slots the budget left out: the seconds until
    /// it no longer does.
    pub fn short(&self, ws: u64) -> Option<u64> {
        self.cut_ns
            .filter(|cut| ws <= *cut && ws < self.until_ns)
            .map(|cut| (cut - ws) / NS + 1)
    }
}

/// What a restore took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreReport {
    pub streams: usize,
    pub slots: usize,
    /// Rows left out: over the slot budget (the oldest go first), outside the retention, or of
    /// a slot that starts after the store did.
    pub skipped: usize,
}

impl MetricStore {
    /// Takes the history's rows of the time before the store started (see the module notes).
    /// At most `max_slots` slots are kept, the newest first; streams beyond the store's caps
    /// (`max_series` plus `max_overflow_series`) are left out. Replaces what an earlier call
    /// restored.
    pub fn restore(&self, mut rows: Vec<MetricSlotRecord>, max_slots: usize) -> RestoreReport {
        let now = self.now();
        let lim = self.limits(now);
        let oldest = now.saturating_sub(lim.retention_ns);
        let max_streams = self.cfg.max_series + self.cfg.max_overflow_series;
        let mut report = RestoreReport::default();
        // Newest first, so the budget keeps the slots a window reads first.
        rows.sort_by_key(|r| std::cmp::Reverse(r.slot_start_unix));
        let mut restored = Restored {
            until_ns: now,
            ..Restored::default()
        };
        let mut packed = Vec::new();
        for row in rows {
            let start_ns = u64::try_from(row.slot_start_unix)
                .unwrap_or(0)
                .saturating_mul(NS);
            if start_ns < oldest || start_ns >= now {
                report.skipped += 1;
                continue;
            }
            if report.slots >= max_slots {
                restored.cut_ns.get_or_insert(start_ns);
                report.skipped += 1;
                continue;
            }
            let extras: Vec<&str> = row.extras.iter().map(String::as_str).collect();
            let mut ex = [""; MAX_EXTRA_DIMS];
            for (slot, e) in ex.iter_mut().zip(&extras) {
                *slot = e;
            }
            let attrs: Vec<(&str, &str)> = row
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let p = MetricPoint {
                service: &row.service,
                env: &row.env,
                version: &row.version,
                extras: ex,
                instance: &row.instance,
                metric: &row.metric,
                unit: &row.unit,
                attributes: &attrs,
                start_time_unix_nano: 0,
                time_unix_nano: row.last_time_unix_nano,
                value: PointValue::Gauge(0.0),
            };
            StreamKey::pack(&p, self.extras, false, &mut packed);
            if !restored.streams.contains_key(packed.as_slice()) {
                if restored.streams.len() >= max_streams {
                    restored.cut_ns.get_or_insert(start_ns);
                    report.skipped += 1;
                    continue;
                }
                let key = StreamKey::of(&p, self.extras, false);
                restored
                    .by_metric
                    .entry((row.service.clone(), row.metric.clone()))
                    .or_default()
                    .push(packed.clone().into_boxed_slice());
                restored.streams.insert(
                    packed.clone().into_boxed_slice(),
                    RestoredStream {
                        key,
                        kind: row.kind.clone(),
                        unit: row.unit.clone(),
                        slots: Vec::new(),
                    },
                );
            }
            let stream = restored
                .streams
                .get_mut(packed.as_slice())
                .expect("inserted above");
            if stream.kind != row.kind || stream.unit != row.unit {
                report.skipped += 1;
                continue;
            }
            let totals = SlotTotals::of_record(&row);
            stream.slots.push(RestoredSlot {
                totals: SlotTotals {
                    end: totals.last_t.max(totals.start),
                    ..totals
                },
                sketch: row.sketch.into_boxed_slice(),
            });
            report.slots += 1;
        }
        for s in restored.streams.values_mut() {
            s.slots.sort_by_key(|x| x.totals.start);
        }
        report.streams = restored.streams.len();
        *self.restored.write() = restored;
        report
    }

    /// Forgets the restored slots once the retention has passed them all.
    pub(crate) fn age_restored(&self, now: u64) {
        let lim = self.limits(now);
        let gone = {
            let r = self.restored.read();
            !r.streams.is_empty() && r.until_ns < now.saturating_sub(lim.retention_ns)
        };
        if gone {
            *self.restored.write() = Restored::default();
        }
    }

    /// Heap bytes of the restored slots.
    pub(crate) fn restored_bytes(&self) -> usize {
        let r = self.restored.read();
        r.streams
            .values()
            .map(|s| {
                s.key.heap_bytes()
                    + s.slots.capacity() * size_of::<RestoredSlot>()
                    + s.slots.iter().map(|x| x.sketch.len()).sum::<usize>()
                    + 64
            })
            .sum::<usize>()
            + r.streams.len() * 2 * 64
    }
}
