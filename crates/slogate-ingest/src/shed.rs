//! Load shedding decided outside a request: memory pressure, switched on and off by the
//! server's memory watchdog, and the retry drill, which refuses a configured fraction of
//! requests as if overloaded so that operators can check their exporters retry. Both refuse
//! through the same path as a full in-flight limit: gRPC `UNAVAILABLE` with `RetryInfo`, HTTP
//! 503 with `Retry-After`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Why a request was refused for overload (`slogate_ingest_shed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// `ingest.max_inflight_requests` requests were being decoded.
    InFlight = 0,
    /// The process was over the high-water mark of `ingest.memory_limit_bytes`.
    Memory = 1,
    /// The retry drill (`ingest.drill_refuse_fraction`).
    Drill = 2,
    /// `ingest.max_inflight_bytes` of request bodies were held.
    InFlightBytes = 3,
}

impl ShedReason {
    pub const ALL: [ShedReason; 4] = [
        ShedReason::InFlight,
        ShedReason::InFlightBytes,
        ShedReason::Memory,
        ShedReason::Drill,
    ];
    pub fn label(self) -> &'static str {
        match self {
            ShedReason::InFlight => "in_flight",
            ShedReason::Memory => "memory",
            ShedReason::Drill => "drill",
            ShedReason::InFlightBytes => "in_flight_bytes",
        }
    }
}

/// Parts per million: the drill's resolution.
const PPM: u64 = 1_000_000;

/// The switches the admission check reads: one relaxed load each when they are off.
#[derive(Debug, Default)]
pub struct Shedding {
    memory: AtomicBool,
    drill_ppm: AtomicU32,
    draws: AtomicU64,
}

impl Shedding {
    /// Turns memory shedding on or off; returns whether it was on.
    pub fn set_memory_pressure(&self, on: bool) -> bool {
        self.memory.swap(on, Relaxed)
    }

    pub fn memory_pressure(&self) -> bool {
        self.memory.load(Relaxed)
    }

    /// Refuses `fraction` (0 to 1) of the requests that would otherwise be admitted.
    pub fn set_drill_fraction(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * PPM as f64).round() as u32;
        self.drill_ppm.store(ppm, Relaxed);
    }

    /// Why the next request should be refused before it takes an in-flight slot, if at all.
    /// `drill` says whether this check may draw for the drill (once per request).
    pub(crate) fn refuse(&self, drill: bool) -> Option<ShedReason> {
        if self.memory.load(Relaxed) {
            return Some(ShedReason::Memory);
        }
        let ppm = self.drill_ppm.load(Relaxed);
        if drill && ppm > 0 {
            let n = self.draws.fetch_add(1, Relaxed);
            if splitmix64(n) % PPM < u64::from(ppm) {
                return Some(ShedReason::Drill);
            }
        }
        None
    }
}

/// A well-mixed 64-bit value from a counter: successive draws are independent enough that a
/// client's retries are refused with the configured probability each, not in fixed runs.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_refuses_its_fraction_and_memory_pressure_refuses_all() {
        for (fraction, low, high) in [(0.0, 0, 0), (0.3, 2_850, 3_150), (0.7, 6_850, 7_150)] {
            let s = Shedding::default();
            s.set_drill_fraction(fraction);
            let refused = (0..10_000)
                .filter(|_| s.refuse(true) == Some(ShedReason::Drill))
                .count();
            assert!(
                (low..=high).contains(&refused),
                "{fraction}: {refused} of 10000"
            );
            assert_eq!(
                s.refuse(false),
                None,
                "only drawing checks refuse for the drill"
            );
        }
        let s = Shedding::default();
        s.set_drill_fraction(0.5);
        assert!(!s.set_memory_pressure(true));
        assert!((0..100).all(|_| s.refuse(true) == Some(ShedReason::Memory)));
        assert!((0..100).all(|_| s.refuse(false) == Some(ShedReason::Memory)));
        assert!(s.set_memory_pressure(false));
        assert!((0..100).all(|_| s.refuse(false).is_none()));
    }

    #[test]
    fn drill_refusals_do_not_come_in_long_runs() {
        // At 70 %, a run of 20 refusals has probability 0.8 ‰ per start: a client retrying 20
        // times would otherwise give up on whole batches.
        let s = Shedding::default();
        s.set_drill_fraction(0.7);
        let (mut run, mut longest) = (0, 0);
        for _ in 0..10_000 {
            if s.refuse(true).is_some() {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        assert!((10..40).contains(&longest), "longest run {longest}");
    }
}

/// The bytes of request bodies held at once, in KiB permits of one semaphore shared by both
/// receivers: a body takes permits as its bytes arrive (and again for what it inflates to) and
/// gives them back when its request is answered.
#[derive(Debug)]
pub struct BodyBudget {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let kib = bytes
            .div_ceil(1024)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        BodyBudget {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(kib)),
        }
    }

    /// An empty reservation for one request.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            kib: self.kib.clone(),
            held: None,
            held_kib: 0,
            bytes: 0,
        }
    }

    /// Bytes free now (for tests and `/metrics`).
    pub fn available_bytes(&self) -> usize {
        self.kib.available_permits() * 1024
    }
}

/// One request's share of the [`BodyBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    held_kib: usize,
    bytes: usize,
}

impl Reservation {
    /// Accounts for `n` more bytes; false (and nothing taken) when the budget cannot hold them.
    pub fn grow(&mut self, n: usize) -> bool {
        let need = (self.bytes + n).div_ceil(1024);
        if need > self.held_kib {
            let Ok(more) = u32::try_from(need - self.held_kib) else {
                return false;
            };
            match self.kib.clone().try_acquire_many_owned(more) {
                Ok(p) => match &mut self.held {
                    Some(h) => h.merge(p),
                    None => self.held = Some(p),
                },
                Err(_) => return false,
            }
            self.held_kib = need;
        }
        self.bytes += n;
        true
    }

    /// Gives everything back (a refused body is being discarded).
    pub fn release(&mut self) {
        self.held = None;
        self.held_kib = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(10 * 1024);
        let mut a = budget.reservation();
        assert!(a.grow(4000) && a.grow(96));
        assert_eq!(budget.available_bytes(), 6 * 1024);
        let mut b = budget.reservation();
        assert!(b.grow(6 * 1024));
        assert!(!b.grow(1), "full");
        assert!(!a.grow(1024), "full for everyone");
        assert!(a.grow(0));
        drop(a);
        assert_eq!(budget.available_bytes(), 4 * 1024);
        assert!(b.grow(4 * 1024));
        b.release();
        assert_eq!(budget.available_bytes(), 10 * 1024);
    }
}
