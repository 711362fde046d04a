//! Real peers and shared helpers for Spaceport's test suites and benchmarks: the Gradio apps
//! under `tests/peers/`, moto and SeaweedFS, the glTF validator and test files, fakes of the
//! ports for benchmarks, and (feature `aws`) a provisioned AWS environment on moto. Every wait is
//! bounded and every process started here is killed when its guard drops.

#[cfg(feature = "aws")]
pub mod aws;
pub mod build;
mod emulators;
pub mod fakes;
mod files;
mod front;
mod gradio;
mod hostile;
#[cfg(feature = "aws")]
pub mod lambda_batches;
pub mod lambda_rt;
mod model_server;
mod peer;
mod receiver;
pub mod stats;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

pub use emulators::{MotoServer, SeaweedS3};
pub use files::{demo_model, gltf_validate, ort_dylib, png};
pub use front::{FRONT_SHA, Seen, SpaceFront};
pub use gradio::{Gradio, MirrorSpace, matrix_pipeline};
pub use hostile::{Counts, Elsewhere, HostileSpace, Misbehaviour, SLOW_ARTIFACT_BYTES};
pub use model_server::ModelServerMirror;
pub use receiver::WebhookReceiver;

/// How long a mirror may take until `/config` answers.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (the folder holding `Cargo.lock`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("Cargo.lock").is_file() && p.join("crates").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

/// Serves `app` on a free port of 127.0.0.1: its base URL, and the task to abort when done.
pub async fn serve_app(app: axum::Router) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    // No Nagle delay: a streamed answer's small writes (event-stream records) would otherwise
    // wait on the peer's delayed ACK, up to 40 ms each, as `spaceport serve` avoids too.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The Python of the project's test venv, or an error saying how to make it.
pub fn venv_python() -> Result<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: run `bash scripts/test-env.sh` to install the test peers",
            python.display()
        );
    }
    Ok(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("crates/spaceport-core").is_dir());
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
