//! Notification wiring: one durable outbox and one sender task per destination (PagerDuty,
//! Slack, each webhook), the filters that decide what each one is sent, and the notifier the
//! alert state machines and the gates write to.
//!
//! Every secret (the routing key, Slack's webhook URL, a webhook's token) is read here, at
//! start, from its environment variable or file; a missing one stops the start with an error
//! that names where it was looked for, never the value.

use crate::config::{Config, DestinationConfig, PagerDutyConfig, SecretSource};
use crate::engine::alerts::{Notice, Notifier, PagerDutyNotifier};
use anyhow::Context as _;
use slogate_alert::{
    DeliveryBoard, DeliveryStats, Destination, Item, Outbox, PagerDuty, Secret, Sender,
    SenderConfig, Slack, SlackMessage, VerdictNote, Webhook, WebhookMessage,
};
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Starts one sender task once the server runs.
type Spawn = Box<dyn FnOnce(watch::Receiver<bool>) -> JoinHandle<()> + Send>;
/// A destination's outbox and the wake-up of its sender.
type Queue<T> = (Arc<Outbox<T>>, Arc<Notify>);

/// What runs notification delivery.
pub struct Notifications {
    /// Every destination behind one notifier; `None` when there is none.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// PagerDuty's stats (`/api/v1/alerts` shows them as `delivery`).
    pub pagerduty: Option<Arc<DeliveryStats>>,
    /// Every destination's stats, for `/metrics` and the API.
    pub board: Arc<DeliveryBoard>,
    senders: Vec<Spawn>,
}

impl Notifications {
    /// Spawns the sender tasks (once: later calls spawn nothing).
    pub fn spawn(&mut self, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.senders.drain(..).map(|s| s(stop.clone())).collect()
    }
}

fn read_secret(source: &SecretSource) -> Result<Secret, slogate_alert::SecretError> {
    match source {
        SecretSource::File(path) => Secret::from_file(path),
        SecretSource::Env(var) => Secret::from_env(var),
    }
}

/// An outbox and a sender for one destination; the sender waits in `senders` until spawned.
fn outbox_for<D: Destination>(
    destination: D,
    sender: SenderConfig,
    dir: &std::path::Path,
    max_pending: usize,
    board: &mut DeliveryBoard,
    senders: &mut Vec<Spawn>,
) -> anyhow::Result<Queue<D::Item>> {
    let name = destination.name().to_string();
    let kind = destination.kind();
    let outbox = Arc::new(
        Outbox::open(dir, max_pending)
            .with_context(|| format!("cannot open the {name} outbox in {}", dir.display()))?,
    );
    let sender = Sender::new(destination, sender)
        .with_context(|| format!("invalid {name} delivery settings"))?;
    board.add(name.clone(), kind, sender.stats());
    let notify = Arc::new(Notify::new());
    tracing::info!(destination = %name, kind, outbox = %dir.display(), pending = outbox.len(), "notification delivery enabled");
    let (o, n) = (outbox.clone(), notify.clone());
    senders.push(Box::new(move |stop| tokio::spawn(sender.run(o, n, stop))));
    Ok((outbox, notify))
}

fn sender_config(
    max_per_minute: u32,
    retry_min: std::time::Duration,
    retry_max: std::time::Duration,
) -> SenderConfig {
    SenderConfig {
        max_per_minute,
        // Slack asks for about one message a second: a short burst, then the rate.
        rate_burst: 3.min(max_per_minute),
        backoff_min: retry_min,
        backoff_max: retry_max,
        ..SenderConfig::default()
    }
}

/// Opens every configured destination's outbox and builds its sender; fails when a secret is
/// missing or a setting is unusable.
pub fn open(cfg: &Config) -> anyhow::Result<Notifications> {
    let mut board = DeliveryBoard::default();
    let mut senders = Vec::new();
    let mut notifiers: Vec<(String, Arc<dyn Notifier>)> = Vec::new();
    let mut pagerduty = None;
    if let Some(p) = &cfg.pagerduty {
        let (notifier, stats) = open_pagerduty(p, &mut board, &mut senders)?;
        notifiers.push(("pagerduty".into(), notifier));
        pagerduty = Some(stats);
    }
    let n = &cfg.notifications;
    let external = cfg.alerting.link_base_url.trim_end_matches('/').to_string();
    if let Some(d) = &n.slack {
        let source = d
            .secret
            .as_ref()
            .context("slack needs a webhook url source")?;
        let url =
            read_secret(source).context("slack is enabled but its webhook url is not available")?;
        let slack = Slack::new(url).context("invalid slack settings")?;
        let sc = sender_config(d.max_per_minute, d.retry_min, d.retry_max);
        let (outbox, notify) = outbox_for(
            slack,
            sc,
            &d.outbox_dir,
            d.max_pending,
            &mut board,
            &mut senders,
        )?;
        let notifier = Arc::new(MessageNotifier {
            filter: Filter::of(d),
            outbox,
            notify,
            alert: Box::new(|n: &Notice| SlackMessage::alert(&n.note())),
            verdict: Box::new(SlackMessage::verdict),
        });
        notifiers.push((d.name.clone(), notifier));
    }
    for d in &n.webhooks {
        let token = d
            .secret
            .as_ref()
            .map(read_secret)
            .transpose()
            .with_context(|| format!("webhook {} has a token source but no token", d.name))?;
        let url = d.url.as_deref().context("a webhook needs a url")?;
        let hook = Webhook::new(&d.name, url, token)
            .with_context(|| format!("invalid webhook {} settings", d.name))?;
        let sc = SenderConfig {
            rate_burst: 10.min(d.max_per_minute),
            ..sender_config(d.max_per_minute, d.retry_min, d.retry_max)
        };
        let (outbox, notify) = outbox_for(
            hook,
            sc,
            &d.outbox_dir,
            d.max_pending,
            &mut board,
            &mut senders,
        )?;
        let (receiver, receiver2) = (d.name.clone(), d.name.clone());
        let (external, external2) = (external.clone(), external.clone());
        let notifier = Arc::new(MessageNotifier {
            filter: Filter::of(d),
            outbox,
            notify,
            alert: Box::new(move |n: &Notice| {
                WebhookMessage::alert(&n.note(), &receiver, &external)
            }),
            verdict: Box::new(move |v: &VerdictNote| {
                WebhookMessage::verdict(v, &receiver2, &external2)
            }),
        });
        notifiers.push((d.name.clone(), notifier));
    }
    let notifier: Option<Arc<dyn Notifier>> =
        (!notifiers.is_empty()).then(|| Arc::new(FanOut(notifiers)) as Arc<dyn Notifier>);
    Ok(Notifications {
        notifier,
        pagerduty,
        board: Arc::new(board),
        senders,
    })
}

fn open_pagerduty(
    p: &PagerDutyConfig,
    board: &mut DeliveryBoard,
    senders: &mut Vec<Spawn>,
) -> anyhow::Result<(Arc<dyn Notifier>, Arc<DeliveryStats>)> {
    let key = read_secret(&p.routing_key)
        .context("pagerduty is enabled but its routing key is not available")?;
    let destination = PagerDuty::new(&p.url, key).context("invalid pagerduty settings")?;
    let sc = SenderConfig {
        max_per_minute: p.max_per_minute,
        backoff_min: p.retry_min,
        backoff_max: p.retry_max,
        ..SenderConfig::default()
    };
    let (outbox, notify) = outbox_for(
        destination,
        sc,
        &p.outbox_dir,
        p.max_pending,
        board,
        senders,
    )
    .context("cannot start pagerduty delivery")?;
    let stats = board.get("pagerduty").expect("just added").clone();
    Ok((Arc::new(PagerDutyNotifier { outbox, notify }), stats))
}

/// What one destination is sent.
struct Filter {
    alerts: bool,
    verdicts: bool,
    min_tier: slogate_gate::Tier,
}

impl Filter {
    fn of(d: &DestinationConfig) -> Filter {
        Filter {
            alerts: d.alerts,
            verdicts: d.verdicts,
            min_tier: d.min_tier,
        }
    }

    /// P1 is the most urgent tier and sorts first.
    fn wants(&self, n: &Notice) -> bool {
        self.alerts && n.tier <= self.min_tier
    }
}

/// Formats notices and verdict changes for one Slack or webhook destination and queues them.
struct MessageNotifier<T: Item> {
    filter: Filter,
    outbox: Arc<Outbox<T>>,
    notify: Arc<Notify>,
    alert: Box<dyn Fn(&Notice) -> T + Send + Sync>,
    verdict: Box<dyn Fn(&VerdictNote) -> T + Send + Sync>,
}

impl<T: Item> MessageNotifier<T> {
    fn queue(&self, item: T) -> Result<(), String> {
        self.outbox.enqueue(item).map_err(|e| e.to_string())?;
        self.notify.notify_one();
        Ok(())
    }
}

impl<T: Item> Notifier for MessageNotifier<T> {
    fn notify(&self, n: &Notice) -> Result<(), String> {
        if !self.filter.wants(n) {
            return Ok(());
        }
        self.queue((self.alert)(n))
    }

    fn verdict_changed(&self, v: &VerdictNote) -> Result<(), String> {
        if !self.filter.verdicts {
            return Ok(());
        }
        self.queue((self.verdict)(v))
    }
}

/// Hands each notice to every destination; one failing does not stop the others, and the
/// errors are reported together, each with its destination's name.
struct FanOut(Vec<(String, Arc<dyn Notifier>)>);

impl FanOut {
    fn each(&self, f: impl Fn(&dyn Notifier) -> Result<(), String>) -> Result<(), String> {
        let errors: Vec<String> = self
            .0
            .iter()
            .filter_map(|(name, n)| f(n.as_ref()).err().map(|e| format!("{name}: {e}")))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Notifier for FanOut {
    fn notify(&self, n: &Notice) -> Result<(), String> {
        self.each(|d| d.notify(n))
    }

    fn verdict_changed(&self, v: &VerdictNote) -> Result<(), String> {
        self.each(|d| d.verdict_changed(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slogate_gate::Tier;

    fn notice(tier: Tier) -> Notice {
        Notice {
            dedup_key: "slogate/threshold/r".into(),
            resolve: false,
            summary: "s".into(),
            tier,
            rule: "r".into(),
            service: "svc".into(),
            class: "threshold",
            link: "http://x".into(),
            details: serde_json::Value::Null,
            at_unix: 100,
            started_at_unix: 100,
        }
    }

    #[test]
    fn filter_table() {
        let f = |alerts, min_tier| Filter {
            alerts,
            verdicts: true,
            min_tier,
        };
        let cases = [
            (f(true, Tier::Ticket), Tier::Ticket, true),
            (f(true, Tier::Ticket), Tier::P1, true),
            (f(true, Tier::P2), Tier::P1, true),
            (f(true, Tier::P2), Tier::P2, true),
            (f(true, Tier::P2), Tier::Ticket, false),
            (f(true, Tier::P1), Tier::P2, false),
            (f(false, Tier::Ticket), Tier::P1, false),
        ];
        for (i, (filter, tier, want)) in cases.into_iter().enumerate() {
            assert_eq!(filter.wants(&notice(tier)), want, "case {i}");
        }
    }

    struct Failing;
    impl Notifier for Failing {
        fn notify(&self, _: &Notice) -> Result<(), String> {
            Err("outbox is full".into())
        }
    }
    struct Counting(std::sync::atomic::AtomicUsize);
    impl Notifier for Counting {
        fn notify(&self, _: &Notice) -> Result<(), String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn fan_out_reaches_every_destination_and_names_each_failure() {
        let counting = Arc::new(Counting(Default::default()));
        let fan = FanOut(vec![
            ("slack".into(), Arc::new(Failing)),
            ("pagerduty".into(), counting.clone()),
            ("ops".into(), Arc::new(Failing)),
        ]);
        let err = fan.notify(&notice(Tier::P1)).unwrap_err();
        assert_eq!(err, "slack: outbox is full; ops: outbox is full");
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
