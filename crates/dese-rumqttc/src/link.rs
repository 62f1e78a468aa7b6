//! What both clients share: the task that polls rumqttc's event loop, and time helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use dese_protocol::Timestamp;
use rumqttc::{ConnectionError, EventLoop};
use tokio::sync::mpsc;

/// Polls the event loop, and after a failure waits for the engine's go before polling again
/// (which reconnects).
pub(crate) async fn poll(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<rumqttc::Event, ConnectionError>>,
    mut go: mpsc::Receiver<()>,
) {
    if go.recv().await.is_none() {
        return;
    }
    loop {
        let result = eventloop.poll().await;
        let failed = result.is_err();
        if events.send(result).await.is_err() {
            return;
        }
        if failed {
            if go.recv().await.is_none() {
                return;
            }
            // Requests made while the link was down (still in rumqttc's channel or pending)
            // would be written after the reconnection, ahead of the engine's replay, and shift
            // the order in which packet ids are matched to messages: a PUBACK would then be
            // credited to the wrong message. Drop rumqttc's copies; the engine replays what was
            // not acknowledged, in order.
            eventloop.clean();
            eventloop.pending.clear();
            // clean() keeps the events the failed connection had queued (an Outgoing::Publish,
            // a PubAck of an old packet id); delivered after the reconnection, a stale PubAck
            // would acknowledge whichever new message reuses that id (ids cycle 1..=inflight).
            eventloop.state.events.clear();
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The system clock as a [`Timestamp`], to the nanosecond.
pub(crate) fn utc_now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_unix(secs, since.subsec_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}
