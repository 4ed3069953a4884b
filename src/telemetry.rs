//! Logs and metrics. Logs are JSON lines on standard error, written by a background
//! thread so a slow terminal or pipe never stalls a request; each line carries the
//! request id of the request it belongs to. Metrics are Prometheus text, per node:
//! the recorder is owned by the node's state, not installed globally.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tracing_appender::non_blocking::WorkerGuard;

/// Installs the process-wide JSON logger with `filter`; keep the guard alive until
/// exit so buffered lines are flushed.
pub fn init_logging(filter: &str) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
    guard
}

const METADATA: Metadata<'static> = Metadata::new("gatehouse", Level::INFO, None);

/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn owned(labels: &[(&'static str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect()
}

/// The node's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("non-empty buckets")
            .upkeep_timeout(Duration::from_secs(5))
            .build_recorder();
        Metrics { recorder }
    }

    /// Records one HTTP request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("method", method.to_owned()),
            Label::new("status", status.to_string()),
        ];
        let counter = Key::from_parts("http_requests_total", labels.clone());
        self.recorder
            .register_counter(&counter, &METADATA)
            .increment(1);
        let latency = Key::from_parts("http_request_duration_seconds", labels);
        self.recorder
            .register_histogram(&latency, &METADATA)
            .record(seconds);
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, owned(labels)), &METADATA)
            .set(value);
    }

    /// Increments a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.recorder
            .register_counter(&Key::from_parts(name, owned(labels)), &METADATA)
            .increment(1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// Folds recent histogram samples; called periodically.
    pub fn upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }
}
