//! PagerDuty delivery wiring: the durable outbox, the sender task, and the notifier the alert
//! state machines write to.

use crate::config::{PagerDutyConfig, RoutingKeySource};
use crate::engine::alerts::{Notifier, PagerDutyNotifier};
use anyhow::Context as _;
use slogate_alert::{DeliveryStats, Outbox, Sender, SenderConfig};
use std::sync::Arc;
use tokio::sync::Notify;

/// What runs PagerDuty delivery: the notifier for the alerts, the delivery stats for the API,
/// and the sender with its outbox, to spawn.
pub struct PagerDuty {
    pub notifier: Arc<dyn Notifier>,
    pub stats: Arc<DeliveryStats>,
    pub sender: Sender,
    pub outbox: Arc<Outbox>,
    pub notify: Arc<Notify>,
}

/// Opens the outbox and builds the sender; fails when the routing key is not there.
pub fn open(p: &PagerDutyConfig) -> anyhow::Result<PagerDuty> {
    let key = match &p.routing_key {
        RoutingKeySource::File(path) => slogate_alert::Secret::from_file(path),
        RoutingKeySource::Env(var) => slogate_alert::Secret::from_env(var),
    }
    .context("pagerduty is enabled but its routing key is not available")?;
    let outbox =
        Arc::new(Outbox::open(&p.outbox_dir, p.max_pending).with_context(|| {
            format!("cannot open the alert outbox in {}", p.outbox_dir.display())
        })?);
    let pending = outbox.len();
    let mut sc = SenderConfig::new(key);
    sc.url = p.url.clone();
    sc.max_per_minute = p.max_per_minute;
    sc.backoff_min = p.retry_min;
    sc.backoff_max = p.retry_max;
    let sender = Sender::new(sc).context("invalid pagerduty settings")?;
    let stats = sender.stats();
    let notify = Arc::new(Notify::new());
    tracing::info!(url = %p.url, outbox = %p.outbox_dir.display(), pending, "pagerduty delivery enabled");
    let notifier: Arc<dyn Notifier> = Arc::new(PagerDutyNotifier {
        outbox: outbox.clone(),
        notify: notify.clone(),
    });
    Ok(PagerDuty {
        notifier,
        stats,
        sender,
        outbox,
        notify,
    })
}
