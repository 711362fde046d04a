//! The reconstruct worker (long-running mode, as in the GPU container): consumes the
//! `reconstruct` queue with one ONNX Runtime session for its whole life. Wiring only.

mod handler;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cfg = handler::Config::from_env()?;
    let steps = handler::steps(&cfg).await?;
    tracing::info!(data = %cfg.data_dir.display(), provider = ?cfg.model.provider, max_frames = cfg.model.max_frames, "reconstruct worker serving");
    handler::serve(steps, cfg.concurrency).await
}
