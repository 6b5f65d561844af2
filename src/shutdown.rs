//! Graceful shutdown: a future that resolves on SIGTERM or SIGINT (Ctrl-C).
//!
//! The server stops accepting connections when it resolves; the workers then get the
//! configured grace period to finish what they run, and anything still running after that
//! is requeued at the next start (jobs carry leases, so nothing is lost either way).

/// Resolves when the process is asked to stop.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: no new requests; running jobs get the grace period");
}
