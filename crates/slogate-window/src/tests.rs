//! Registry tests: freshness, slot closing, windows, threads, cardinality caps, retention.

use crate::{Clock, ManualClock, Registry, WindowConfig};
use slogate_core::{OVERFLOW, Observation, ObservationWriter, Operation, Recorder, Selector};
use std::sync::Arc;

const T0: u64 = 1_800_000_000; // a multiple of 300, so slots line up with coarse slots

fn obs<'a>(
    service: &'a str,
    version: &'a str,
    op: &'a str,
    error: bool,
    ms: u64,
) -> Observation<'a> {
    Observation {
        service: service.as_bytes(),
        env: b"prod",
        version: version.as_bytes(),
        operation: Operation::single(op.as_bytes()),
        extras: [b""; 4],
        error,
        duration_ns: ms * 1_000_000,
        adjusted_count: 1,
    }
}

fn setup(cfg: WindowConfig) -> (Arc<Registry>, Arc<ManualClock>) {
    let clock = ManualClock::new(T0);
    (Registry::new(cfg, clock.clone()), clock)
}

fn sel(pairs: &[(&str, &str)]) -> Selector {
    Selector::new(pairs.iter().copied(), &[]).unwrap()
}

fn record(reg: &Registry, items: &[Observation<'_>]) {
    let mut w = reg.writer();
    for o in items {
        w.record(o);
    }
}

#[test]
fn fresh_data_is_visible_before_its_slot_closes() {
    let (reg, _clock) = setup(WindowConfig::default());
    record(
        &reg,
        &[
            obs("checkout", "v1", "GET /", false, 10),
            obs("checkout", "v1", "GET /", true, 30),
        ],
    );
    let w = reg.query(&sel(&[("service", "checkout")]), 60);
    assert_eq!((w.requests, w.errors, w.series), (2, 1, 1));
    assert_eq!(w.sketch.max(), Some(30_000_000));
}

#[test]
fn windows_cover_whole_slots() {
    let (reg, clock) = setup(WindowConfig::default());
    // One request per 10 s slot for 10 minutes.
    for _ in 0..60 {
        record(&reg, &[obs("checkout", "v1", "GET /", false, 10)]);
        clock.advance(10);
        reg.close_slots();
    }
    // Now at T0 + 600: the 60 s window is the open slot plus 6 closed ones.
    let check = |window: u64, want: u64| {
        let w = reg.query(&sel(&[("service", "checkout")]), window);
        assert_eq!(w.requests, want, "window {window}s");
    };
    check(60, 6);
    check(65, 7);
    check(300, 30);
    check(3600, 60);
    // Beyond the fine retention, the coarse ring answers: 5-minute slots.
    check(7200, 60);
}

#[test]
fn selectors_split_cohorts() {
    let (reg, _clock) = setup(WindowConfig::default());
    record(
        &reg,
        &[
            obs("checkout", "v1", "GET /", false, 10),
            obs("checkout", "v2", "GET /", true, 20),
            obs("checkout", "v2", "POST /", false, 20),
        ],
    );
    // (selector, requests, errors)
    type Case<'a> = (&'a [(&'a str, &'a str)], u64, u64);
    let cases: &[Case<'_>] = &[
        (&[("service", "checkout")], 3, 1),
        (&[("service", "checkout"), ("version", "v2")], 2, 1),
        (
            &[
                ("service", "checkout"),
                ("version", "v2"),
                ("operation", "POST /"),
            ],
            1,
            0,
        ),
        (&[("service", "checkout"), ("version", "v3")], 0, 0),
        (&[("service", "auth")], 0, 0),
    ];
    for (pairs, requests, errors) in cases {
        let w = reg.query(&sel(pairs), 60);
        assert_eq!((w.requests, w.errors), (*requests, *errors), "{pairs:?}");
    }
}

#[test]
fn concurrent_writers_lose_nothing() {
    let (reg, clock) = setup(WindowConfig::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                for i in 0..2_000u64 {
                    let op = format!("op{}", i % 7);
                    record(
                        &reg,
                        &[obs(
                            "checkout",
                            if t % 2 == 0 { "v1" } else { "v2" },
                            &op,
                            i % 10 == 0,
                            1 + i % 50,
                        )],
                    );
                }
            })
        })
        .collect();
    // Slots close while the writers run.
    for _ in 0..5 {
        clock.advance(10);
        reg.close_slots();
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
    let w = reg.query(&sel(&[("service", "checkout")]), 600);
    assert_eq!((w.requests, w.errors), (8_000, 800));
    assert_eq!(w.sketch.count(), 8_000);
    assert_eq!(reg.series_count(), 14);
}

#[test]
fn cardinality_is_capped_with_overflow() {
    let cfg = WindowConfig {
        max_series_per_service: 3,
        max_overflow_series_per_service: 1,
        ..Default::default()
    };
    let (reg, _clock) = setup(cfg);
    let ops: Vec<String> = (0..10).map(|i| format!("/user/{i}")).collect();
    for op in &ops {
        record(&reg, &[obs("checkout", "v1", op, false, 5)]);
    }
    // A second version over the cap: its own overflow series would exceed the overflow budget,
    // so it lands in the all-overflow series.
    record(&reg, &[obs("checkout", "v2", "/user/99", false, 5)]);
    let keys = reg.series_keys(Some("checkout"));
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(
        reg.stats
            .overflow_observations
            .load(std::sync::atomic::Ordering::Relaxed),
        8
    );
    let w = reg.query(
        &sel(&[
            ("service", "checkout"),
            ("operation", OVERFLOW),
            ("version", "v1"),
        ]),
        60,
    );
    assert_eq!(w.requests, 7);
    let w = reg.query(&sel(&[("service", "checkout"), ("version", OVERFLOW)]), 60);
    assert_eq!(w.requests, 1);
    // Nothing is lost: the service total still counts every span.
    assert_eq!(reg.query(&sel(&[("service", "checkout")]), 60).requests, 11);
}

#[test]
fn global_cap_collapses_new_services() {
    let cfg = WindowConfig {
        max_series: 2,
        ..Default::default()
    };
    let (reg, _clock) = setup(cfg);
    for svc in ["a", "b", "c", "d"] {
        record(&reg, &[obs(svc, "v1", "op", false, 5)]);
    }
    assert_eq!(reg.query(&sel(&[("service", OVERFLOW)]), 60).requests, 2);
    assert_eq!(reg.series_count(), 3);
}

#[test]
fn retention_drops_old_slots_and_bounds_memory() {
    let cfg = WindowConfig {
        fine_retention_seconds: 600,
        coarse_retention_seconds: 3600,
        ..Default::default()
    };
    let (reg, clock) = setup(cfg);
    let mut peak = 0;
    for i in 0..1000u64 {
        record(&reg, &[obs("checkout", "v1", "GET /", false, 1 + i % 500)]);
        clock.advance(10);
        reg.close_slots();
        if i == 500 {
            peak = reg.memory_bytes();
        }
    }
    // ~2.8 h of slots were written; only the retained ones remain and memory stopped growing.
    assert_eq!(
        reg.query(&sel(&[("service", "checkout")]), 600).requests,
        60
    );
    // 3600 s is past the fine retention: 12 whole coarse slots (360) plus the open one (10).
    assert_eq!(
        reg.query(&sel(&[("service", "checkout")]), 3600).requests,
        370
    );
    assert!(
        reg.memory_bytes() <= peak + peak / 10,
        "memory {} vs {}",
        reg.memory_bytes(),
        peak
    );
}

#[test]
fn a_lagging_closer_never_mixes_slots() {
    let (reg, clock) = setup(WindowConfig::default());
    record(&reg, &[obs("checkout", "v1", "GET /", false, 10)]);
    // Two slots pass without the closer running: the writer flushes the stale slot itself.
    clock.advance(20);
    record(&reg, &[obs("checkout", "v1", "GET /", false, 20)]);
    clock.advance(10);
    reg.close_slots();
    let w = reg.query(&sel(&[("service", "checkout")]), 10);
    assert_eq!(
        w.requests, 1,
        "only the newer slot is in the 10 s window (+ open slot)"
    );
    assert_eq!(reg.query(&sel(&[("service", "checkout")]), 60).requests, 2);
}

#[test]
fn closed_slots_are_exported_once_and_import_restores_windows() {
    let (reg, clock) = setup(WindowConfig::default());
    let mut exported = Vec::new();
    for i in 0..6u64 {
        record(
            &reg,
            &[
                obs("checkout", "v1", "GET /", i % 3 == 0, 10 + i),
                obs("checkout", "v2", "GET /", false, 20),
            ],
        );
        clock.advance(10);
        exported.extend(reg.close_slots());
        // Closing again without time passing exports nothing new.
        assert!(reg.close_slots().is_empty());
    }
    assert_eq!(exported.len(), 12, "one row per series per slot");
    assert_eq!(exported.iter().map(|r| r.requests).sum::<u64>(), 12);
    assert_eq!(exported.iter().map(|r| r.errors).sum::<u64>(), 2);
    assert!(
        exported
            .iter()
            .all(|r| r.slot_start_unix % 10 == 0 && r.slot_seconds == 10)
    );

    // A restarted process (a new registry at the same time) sees the same windows after import.
    let clock2 = ManualClock::new(clock.now_unix());
    let reg2 = Registry::new(WindowConfig::default(), clock2);
    assert_eq!(reg2.import(&exported).unwrap(), 12);
    for (pairs, window) in [
        (&[("service", "checkout")][..], 600),
        (&[("service", "checkout"), ("version", "v1")][..], 30),
    ] {
        let (a, b) = (
            reg.query(&sel(pairs), window),
            reg2.query(&sel(pairs), window),
        );
        assert_eq!(
            (a.requests, a.errors, a.sketch.quantile(0.9)),
            (b.requests, b.errors, b.sketch.quantile(0.9)),
            "{pairs:?} {window}"
        );
    }
}

#[test]
fn window_sketches_are_exact_whichever_ring_answers() {
    // Every window merges fine slots up to a coarse boundary and coarse slots after it, plus the
    // shards' open slots; the result must be exactly the values in the window, counted once.
    let (reg, clock) = setup(WindowConfig::default());
    let mut recorded: Vec<(u64, u64)> = Vec::new(); // (slot, value)
    clock.advance(40); // start mid coarse slot
    for i in 0..200u64 {
        let slot = clock.now_unix() / 10;
        let values = [1 + i % 7, 1_000 + i * 37 % 5_000, 2_000_000 + i * 7_919];
        let items: Vec<_> = values
            .iter()
            .map(|&v| Observation {
                duration_ns: v,
                adjusted_count: 1,
                ..obs("checkout", "v1", "GET /", false, 0)
            })
            .collect();
        record(&reg, &items);
        recorded.extend(values.iter().map(|&v| (slot, v)));
        clock.advance(10);
        // The closer skips every third slot end, so some windows also read unsealed slots.
        if i % 3 != 0 {
            reg.close_slots();
        }
    }
    let current = clock.now_unix() / 10;
    for window in [10u64, 60, 290, 300, 310, 600, 1_230, 3_600] {
        let first = current - window.div_ceil(10);
        let mut want = slogate_sketch::Sketch::new();
        recorded
            .iter()
            .filter(|(s, _)| *s >= first)
            .for_each(|(_, v)| want.record(*v));
        let got = reg.query(&sel(&[("service", "checkout")]), window);
        assert_eq!(got.requests, want.count(), "window {window}s");
        assert_eq!(got.sketch, want, "window {window}s");
    }
}

#[test]
fn counts_past_every_carry_boundary_stay_exact_in_windows() {
    // Open slots count a busy series' buckets in one byte each: a bucket past 255 carries into
    // spill records worth 256, then (the entry widened) into a high byte, and past 65,535 into
    // a record worth 65,536. Series "busy" gets a spread of values (a dense window) and one
    // bucket hit 70,000 times, "warm" one bucket hit 1,000 times (narrow carries only), "flat"
    // a single value 70,000 times (a sparse table, `u16` counts). Open, closed, and in the next
    // slot (which starts wide from the hint), windows hold exactly what was recorded.
    let (reg, clock) = setup(WindowConfig::default());
    let services = ["busy", "warm", "flat"];
    let mut want = [
        slogate_sketch::Sketch::new(),
        slogate_sketch::Sketch::new(),
        slogate_sketch::Sketch::new(),
    ];
    let check = |want: &[slogate_sketch::Sketch; 3], when: &str| {
        for (svc, want) in services.iter().zip(want) {
            let got = reg.query(&sel(&[("service", svc)]), 60);
            assert_eq!(got.requests, want.count(), "{svc} {when}");
            assert_eq!(got.sketch, *want, "{svc} {when}");
        }
    };
    for slot in 0..2 {
        let mut values: Vec<(usize, u64)> = Vec::new();
        values.extend((0..2_000u64).map(|i| (0, 3_000_000 + i * 7_919 % 4_000_000)));
        values.extend((0..600u64).map(|i| (1, 1_000_000 + i * 6_151 % 2_000_000)));
        values.extend(std::iter::repeat_n((0, 4_000_000), 70_000));
        values.extend(std::iter::repeat_n((1, 1_500_000), 1_000));
        values.extend(std::iter::repeat_n((2, 9_000_000), 70_000));
        // Outliers after the carries, so a wide window grows on both sides.
        values.extend([(0, 1_000), (0, 60_000_000_000)]);
        let mut w = reg.writer();
        for &(k, v) in &values {
            w.record(&Observation {
                duration_ns: v,
                adjusted_count: 1,
                ..obs(services[k], "v1", "GET /", false, 0)
            });
            want[k].record(v);
        }
        drop(w);
        check(&want, &format!("slot {slot}, open"));
        clock.advance(10);
        reg.close_slots();
        check(&want, &format!("slot {slot}, closed"));
    }
}

#[test]
fn queries_during_a_close_pass_count_every_span_exactly_once() {
    // Thousands of series, so a close pass (merge and encode every series) takes long enough
    // for many queries to run while its parts are staged and half of them sealed.
    let (reg, clock) = setup(WindowConfig {
        max_series_per_service: 10_000,
        ..WindowConfig::default()
    });
    let ops: Vec<String> = (0..4_000).map(|i| format!("GET /r{i}")).collect();
    let all = sel(&[("service", "checkout")]);
    let mut total = 0u64;
    let mut overlapped = 0u64;
    for pass in 0..3u64 {
        {
            let mut w = reg.writer();
            for (i, op) in ops.iter().enumerate() {
                for k in 0..3u64 {
                    w.record(&obs(
                        "checkout",
                        "v1",
                        op,
                        k == 0,
                        1 + (i as u64 + k + pass) % 500,
                    ));
                }
            }
        }
        total += 3 * ops.len() as u64;
        clock.advance(10);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let q = s.spawn(|| {
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let w = reg.query(&all, 600);
                    assert_eq!(
                        (w.requests, w.errors),
                        (total, total / 3),
                        "a query during close pass {pass} miscounted"
                    );
                    assert_eq!(w.sketch.count(), total);
                    n += 1;
                }
                n
            });
            // Let the query thread start, then close.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let rows = reg.close_slots();
            assert_eq!(rows.len(), ops.len());
            done.store(true, std::sync::atomic::Ordering::Release);
            overlapped += q.join().unwrap();
        });
        let w = reg.query(&all, 600);
        assert_eq!(w.requests, total);
    }
    assert!(
        overlapped >= 3,
        "only {overlapped} queries ran alongside the close passes"
    );
}

#[test]
fn observed_time_starts_at_the_first_slot_with_data() {
    let (reg, clock) = setup(WindowConfig::default());
    let all = sel(&[("service", "checkout")]);
    assert_eq!(reg.query(&all, 600).observed_seconds, 0, "no data, no time");
    // Eight minutes of nothing, then 40 requests a second for two minutes (12 slots).
    clock.advance(480);
    reg.close_slots();
    for _ in 0..12 {
        let batch: Vec<_> = (0..400)
            .map(|_| obs("checkout", "v1", "GET /", false, 10))
            .collect();
        record(&reg, &batch);
        clock.advance(10);
        reg.close_slots();
    }
    let w = reg.query(&all, 600);
    assert_eq!(w.requests, 4800);
    // 120 s of traffic in a 610 s window: 40/s, not 7.9/s.
    assert_eq!((w.covered_seconds, w.observed_seconds), (610, 120));
    // Data only in the open slot: the time since that slot began.
    let (reg, clock) = setup(WindowConfig::default());
    clock.advance(3);
    record(&reg, &[obs("checkout", "v1", "GET /", false, 10)]);
    assert_eq!(reg.query(&all, 600).observed_seconds, 3);
    // Past the fine retention the coarse slots bound it, still inside the window.
    let (reg, clock) = setup(WindowConfig::default());
    for _ in 0..400 {
        record(&reg, &[obs("checkout", "v1", "GET /", false, 10)]);
        clock.advance(10);
        reg.close_slots();
    }
    let w = reg.query(&all, 2 * 3600);
    assert!(
        w.observed_seconds >= 3990 && w.observed_seconds <= w.covered_seconds,
        "{w:?}"
    );
}

#[test]
fn sampled_spans_count_their_adjusted_count_and_the_sketch_keeps_the_sample() {
    let (reg, _clock) = setup(WindowConfig::default());
    {
        let mut w = reg.writer();
        // 10 spans sampled at 1 in 4 (one an error), 5 unsampled spans.
        for i in 0..10 {
            w.record(&Observation {
                adjusted_count: 4,
                ..obs("checkout", "v2", "GET /", i == 0, 10 + i)
            });
        }
        for i in 0..5 {
            w.record(&obs("checkout", "v2", "GET /", false, 20 + i));
        }
    }
    let w = reg.query(&sel(&[("service", "checkout")]), 60);
    assert_eq!((w.requests, w.errors), (45, 4), "adjusted counts");
    assert_eq!(w.sketch.count(), 15, "the sample the statistics use");
}

#[test]
fn a_timeline_holds_each_sealed_slot_once_in_its_step() {
    // 200 slots of traffic, a value per slot that says which slot it is, two series; every
    // slot sealed but the open one. Each step of the timeline must hold exactly the values of
    // its slots, from the fine ring (a range within the fine retention) or the coarse ring.
    let (reg, clock) = setup(WindowConfig::default());
    let mut recorded: Vec<(u64, u64, bool)> = Vec::new(); // (unix, value, error)
    clock.advance(40);
    for i in 0..200u64 {
        let at = clock.now_unix();
        let error = i % 5 == 0;
        for version in ["v1", "v2"] {
            let o = Observation {
                duration_ns: 1_000 + i,
                ..obs("checkout", version, "GET /", error, 0)
            };
            record(&reg, &[o]);
            recorded.push((at, 1_000 + i, error));
        }
        clock.advance(10);
        reg.close_slots();
    }
    // Traffic in the open slot is not in any step yet.
    record(&reg, &[obs("checkout", "v1", "GET /", false, 99)]);
    let now = clock.now_unix();
    for (range, step, want_step, slot) in [
        (600u64, 60u64, 60u64, 10u64),
        (600, 1, 10, 10),
        (1_800, 60, 60, 10),
        (7_200, 60, 300, 300),
        (7_200, 900, 900, 300),
    ] {
        let (got_step, steps) = reg.timeline(&sel(&[("service", "checkout")]), range, step);
        assert_eq!(got_step, want_step, "{range}/{step}");
        assert_eq!(
            steps.len() as u64,
            range.div_ceil(want_step),
            "{range}/{step}"
        );
        let end = now / slot * slot;
        assert_eq!(steps.last().unwrap().start_unix + got_step, end);
        for st in &steps {
            let mut want = slogate_sketch::Sketch::new();
            let mut errors = 0;
            for (at, v, e) in &recorded {
                if (st.start_unix..st.start_unix + got_step).contains(at) {
                    want.record(*v);
                    errors += u64::from(*e);
                }
            }
            assert_eq!(
                st.requests,
                want.count(),
                "{range}/{step} at {}",
                st.start_unix
            );
            assert_eq!(st.errors, errors, "{range}/{step} at {}", st.start_unix);
            assert_eq!(st.sketch, want, "{range}/{step} at {}", st.start_unix);
        }
        let total: u64 = steps.iter().map(|s| s.requests).sum();
        assert!(total > 0);
    }
    // The step count is capped.
    let (step, steps) = reg.timeline(&sel(&[("service", "checkout")]), 3 * 86_400, 1);
    assert!(steps.len() as u64 <= crate::MAX_TIMELINE_STEPS);
    assert_eq!(step % 300, 0);
    // Another service has empty steps, not missing ones.
    let (_, steps) = reg.timeline(&sel(&[("service", "cart")]), 600, 60);
    assert_eq!(steps.len(), 10);
    assert!(steps.iter().all(|s| s.requests == 0));
}

/// A shard's overflow cache never sends a key elsewhere than the registry's own resolution
/// would: random keys over small caps (services, envs, versions, routes, one extra), each
/// placed from the cache of one of two shards when it knows and checked against `resolve`,
/// across the per-service caps and then the global one.
#[test]
fn the_overflow_cache_places_every_key_where_resolve_would() {
    use rand::{Rng, SeedableRng};
    let cfg = WindowConfig {
        // 12 services × 5 regular series, then up to 3 cohort and 1 service overflow series
        // each: the global cap is reached late in the run.
        max_series: 100,
        max_series_per_service: 5,
        max_overflow_series_per_service: 3,
        extra_dims: vec!["region".into()],
        ..WindowConfig::default()
    };
    let (reg, _) = setup(cfg);
    // Two shards (two ingest threads): each learns only what it resolved itself.
    let mut shards = [
        crate::registry::tests_support::shard_state(),
        crate::registry::tests_support::shard_state(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut from_cache, mut checked) = (0, 0);
    for _ in 0..20_000 {
        let service = format!("svc-{}", rng.random_range(0..12));
        let env = ["prod", "staging"][rng.random_range(0..2)];
        let version = format!("v{}", rng.random_range(0..6));
        let op = format!("GET /r/{}", rng.random_range(0..40));
        let region = ["eu", "us"][rng.random_range(0..2)];
        let o = Observation {
            env: env.as_bytes(),
            extras: [region.as_bytes(), b"", b"", b""],
            ..obs(&service, &version, &op, false, 5)
        };
        let state = &mut shards[rng.random_range(0..2)];
        let id = crate::registry::tests_support::place(&reg, state, &o);
        if let Some(cached) = id.0 {
            from_cache += 1;
            assert_eq!(
                cached, id.1,
                "{service}/{env}/{version}/{op}/{region}: the cache and resolve disagree"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 20_000);
    assert_eq!(
        reg.series_count(),
        100 + 1,
        "every cap reached, the global overflow made"
    );
    assert!(
        from_cache > 1_000,
        "the cache placed only {from_cache} keys"
    );
}
