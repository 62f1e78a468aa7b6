//! The metrics endpoint (`--metrics`): the process's recorder, and `GET /metrics` in the
//! Prometheus text format.
//!
//! The SDK's clients count through the `metrics` facade ([`dese_transport::metrics::CATALOG`]);
//! the reference backend adds its storage's figures ([`CATALOG`]). Install the recorder before
//! spawning the backend: a client takes its handles when it starts.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use dese_transport::metrics::{Metric, MetricType};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The metrics of the reference backend itself.
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "dese_store_writes_total",
        kind: MetricType::Counter,
        labels: &["outcome"],
        help: "Batches written to the database: committed, or failed (written again after a pause; the broker keeps their messages meanwhile).",
    },
    Metric {
        name: "dese_store_write_seconds",
        kind: MetricType::Histogram,
        labels: &[],
        help: "How long one batch's transaction took, committed or failed.",
    },
    Metric {
        name: "dese_store_batch_events",
        kind: MetricType::Histogram,
        labels: &[],
        help: "Events in each committed batch.",
    },
    Metric {
        name: "dese_store_readings_total",
        kind: MetricType::Counter,
        labels: &[],
        help: "Readings this instance added to the database (copies stored before not counted).",
    },
];

/// Buckets for the durations, seconds: from a fast local commit to a command retried for a minute.
const SECONDS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Buckets for the batch sizes.
const EVENTS: [f64; 9] = [1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// Installs the Prometheus recorder as the process's, and describes every metric.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), &EVENTS))
        .map_err(|e| format!("metrics buckets: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "a metrics recorder is installed already".to_string())?;
    dese_transport::metrics::describe();
    dese_transport::metrics::describe_all(CATALOG);
    Ok(handle)
}

/// How often the histograms' recent samples are folded into their buckets when nobody scrapes
/// (otherwise they would pile up while Prometheus is away).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `addr` until the task is aborted; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                // The latest samples, into their buckets.
                handle.run_upkeep();
                let mut response = handle.render().into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
        }),
    );
    let task = tokio::spawn(async move {
        let serve = async {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        };
        let upkeep = async {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        };
        tokio::join!(serve, upkeep);
    });
    Ok((bound, task))
}
