//! Delivery of alarm webhooks from the outbox: each call is a JSON POST, retried with
//! exponential backoff (1 s doubling to 5 min) up to 10 attempts; the outbox survives
//! restarts, so an alarm raised is delivered or its failure recorded.
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::store::{Alarm, Store};

const POLL: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers due alarms until `stopped` turns true.
pub async fn deliver(store: Arc<dyn Store>, mut stopped: watch::Receiver<bool>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CALL_TIMEOUT))
        .http_status_as_error(true)
        .build()
        .into();
    loop {
        let (store, agent) = (store.clone(), agent.clone());
        let result = tokio::task::spawn_blocking(move || round(store.as_ref(), &agent)).await;
        if let Ok(Err(error)) = result {
            tracing::error!(%error, "alarm delivery failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

fn round(store: &dyn Store, agent: &ureq::Agent) -> Result<(), crate::store::StoreError> {
    for alarm in store.pending_alarms(Timestamp::now(), 50)? {
        let result = call(agent, &alarm);
        match &result {
            Ok(()) => tracing::info!(alarm = alarm.alarm, url = alarm.url, "alarm delivered"),
            Err(error) => {
                tracing::warn!(alarm = alarm.alarm, url = alarm.url, attempt = alarm.attempts + 1, %error, "alarm webhook failed: will retry")
            }
        }
        store.alarm_attempted(alarm.id, result, Timestamp::now())?;
    }
    Ok(())
}

fn call(agent: &ureq::Agent, alarm: &Alarm) -> Result<(), String> {
    agent
        .post(&alarm.url)
        .header("content-type", "application/json")
        .send(alarm.payload.as_str())
        .map(|_| ())
        .map_err(|error| error.to_string())
}
