//! One way to run a background task: every `every`, run a blocking job on the blocking pool,
//! until the stop signal. The slot closer, the alert evaluator, the history flusher and the
//! compactor are each one call.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// When the first run happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// At once, on start.
    Now,
    /// One period after start.
    AfterOnePeriod,
}

/// Runs `job` every `every` on the blocking pool, one run at a time, until `stop` turns true.
/// A run that panics is logged with `name` and the next tick runs again; a run in progress when
/// the stop comes finishes first. Ticks missed while a run was slow are handled by `missed`.
pub fn spawn_periodic<F>(
    name: &'static str,
    every: Duration,
    first: First,
    missed: MissedTickBehavior,
    mut stop: watch::Receiver<bool>,
    job: F,
) -> JoinHandle<()>
where
    F: Fn() + Send + Sync + 'static,
{
    let job = std::sync::Arc::new(job);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(missed);
        if first == First::AfterOnePeriod {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|v| *v) => break,
            }
            let job = job.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || job()).await {
                tracing::error!(task = name, error = %e, "background task panicked; it runs again at the next tick");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Spawns a 10 ms task counting its runs (the first `panics` runs panic), waits until it has
    /// run `at_least` times (at most 20 s: a panic's backtrace can take a while to print), stops
    /// it, and returns the runs counted when the stop returned and 50 ms later.
    async fn run(first: First, panics: u32, at_least: u32) -> (u32, u32) {
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let r = runs.clone();
        let task = spawn_periodic(
            "test",
            Duration::from_millis(10),
            first,
            MissedTickBehavior::Delay,
            stop_rx,
            move || {
                if r.fetch_add(1, Ordering::SeqCst) < panics {
                    panic!("an early run fails");
                }
            },
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while runs.load(Ordering::SeqCst) < at_least && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let at_stop = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        (at_stop, runs.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn runs_until_stopped_and_survives_panics() {
        // (first run, runs that panic, runs to wait for)
        let cases = [(First::Now, 0, 3), (First::AfterOnePeriod, 2, 4)];
        for (first, panics, at_least) in cases {
            let (at_stop, later) = run(first, panics, at_least).await;
            assert!(at_stop >= at_least, "{first:?}: {at_stop} runs");
            assert_eq!(at_stop, later, "{first:?}: ran after the stop");
        }
    }

    #[tokio::test]
    async fn waits_one_period_when_asked() {
        // A period far longer than the test: `Now` runs once, `AfterOnePeriod` never.
        for (first, want) in [(First::Now, 1), (First::AfterOnePeriod, 0)] {
            let runs = Arc::new(AtomicU32::new(0));
            let (stop_tx, stop_rx) = watch::channel(false);
            let r = runs.clone();
            let task = spawn_periodic(
                "test",
                Duration::from_secs(3600),
                first,
                MissedTickBehavior::Delay,
                stop_rx,
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                },
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop_tx.send(true).unwrap();
            task.await.unwrap();
            assert_eq!(runs.load(Ordering::SeqCst), want, "{first:?}");
        }
    }
}
