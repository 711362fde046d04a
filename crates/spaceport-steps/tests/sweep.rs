//! The sweeper on the embedded adapters with a clock the test moves.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use spaceport_core::PipelineSet;
use spaceport_core::ports::{Clock, Idempotency};
use spaceport_gradio::{ClientOptions, GradioBackend};
use spaceport_local::LocalStack;
use spaceport_steps::{Steps, StepsConfig};

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

#[tokio::test]
async fn the_sweeper_forgets_idempotency_keys_after_a_day_and_keeps_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let pipelines_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let steps = Steps::new(
        Arc::new(PipelineSet::load_dir(&pipelines_dir).unwrap()),
        local.store.clone(),
        local.queue.clone(),
        local.blobs.clone(),
        Arc::new(GradioBackend::new(ClientOptions::default())),
        clock.clone(),
        StepsConfig::default(),
    );
    let key = Idempotency {
        key: "order-17".into(),
        request_hash: "h".into(),
    };
    let new = || {
        serde_json::from_value(json!({
            "pipeline": "vggt",
            "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]},
            "deadline_s": 600,
        }))
        .unwrap()
    };
    let first = steps.create(new(), Some(key.clone())).await.unwrap();
    assert!(!first.existing);

    clock.advance(chrono::Duration::hours(23));
    steps.sweep(Duration::from_secs(10)).await.unwrap();
    let again = steps.create(new(), Some(key.clone())).await.unwrap();
    assert!(again.existing, "within a day the key still answers");
    assert_eq!(again.run.id, first.run.id);

    clock.advance(chrono::Duration::hours(1) + chrono::Duration::seconds(5));
    steps.sweep(Duration::from_secs(10)).await.unwrap();
    let later = steps.create(new(), Some(key)).await.unwrap();
    assert!(!later.existing, "after a day the key is forgotten");
    assert_ne!(later.run.id, first.run.id);
    let kept = steps.store.get(&first.run.id).await.unwrap().expect("kept");
    assert_eq!(kept.id, first.run.id, "the first run stays");
}
