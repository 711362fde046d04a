//! At-least-once delivery, exactly-once effect: each step's message delivered a second time
//! (after the first was handled, or at the same moment) changes nothing, against the real vggt
//! mirror. The stack runs no workers; the tests receive and handle each message by hand.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use spaceport_cli::stack::StackOptions;
use spaceport_core::Status;
use spaceport_core::ports::{Delivery, QueueName};
use spaceport_steps::Outcome;

use crate::common::*;

/// A stack with no step workers (and no sweeper): messages wait in their queues.
async fn manual_stack(mirror: &MirrorSpace) -> TestStack {
    let opts = StackOptions {
        queues: vec![],
        ..fast_options()
    };
    TestStack::start_with(mirror.url(), opts).await.unwrap()
}

/// Receives the one message of `queue` (waiting up to 10 s for it), hidden long enough that it
/// does not come back while the test works.
async fn receive_one(t: &TestStack, queue: QueueName) -> Delivery {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut got = t
            .stack
            .steps
            .ports
            .queue
            .receive(queue, 10, Duration::from_secs(600))
            .await
            .unwrap();
        if !got.is_empty() {
            assert_eq!(
                got.len(),
                1,
                "more than one {} message: {got:?}",
                queue.as_str()
            );
            return got.remove(0);
        }
        assert!(Instant::now() < until, "no {} message", queue.as_str());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many jobs reached the mirror under `dir`: upload calls (each makes an `input_images_…`
/// folder) and `/gradio_demo` runs (each writes a `.glb` into that folder; Gradio's own cached
/// copies elsewhere are not counted).
fn count_jobs(dir: &Path) -> (usize, usize) {
    let (mut uploads, mut demos) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with("input_images_") {
            uploads += 1;
            demos += std::fs::read_dir(&path)
                .map(|es| {
                    es.flatten()
                        .filter(|f| f.file_name().to_string_lossy().ends_with(".glb"))
                        .count()
                })
                .unwrap_or(0);
        } else {
            let (u, d) = count_jobs(&path);
            uploads += u;
            demos += d;
        }
    }
    (uploads, demos)
}

fn mirror_jobs(mirror: &MirrorSpace) -> (usize, usize) {
    count_jobs(mirror.temp_dir())
}

async fn queued_run(t: &TestStack, name: &str) -> String {
    let run = create_and_upload(&t.client, &[(name, png(32, 24, 9))], json!({}), json!({}))
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(t.stored(&id).await.status, Status::Queued);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_delivery_of_each_steps_message_changes_nothing() {
    let mirror = MirrorSpace::start().unwrap();
    let t = manual_stack(&mirror).await;
    let id = queued_run(&t, "dup.png").await;
    let steps = &t.stack.steps;

    for (queue, after) in [
        (QueueName::SubmitSpace, Status::Running),
        (QueueName::PollStatus, Status::Fetching),
        (QueueName::FetchArtifact, Status::Succeeded),
    ] {
        let d = receive_one(&t, queue).await;
        let first = steps.handle(queue, &d.body).await.unwrap();
        assert_eq!(first, Outcome::Done, "{}", queue.as_str());
        steps.ports.queue.delete(queue, &d.receipt).await.unwrap();
        assert_eq!(
            t.stored(&id).await.status,
            after,
            "after {}",
            queue.as_str()
        );

        let run_before = stored_json(&t, &id).await;
        let queues_before = queue_counts(&t).await;
        // Upload calls only: the first delivery's /gradio_demo may still be writing its GLB.
        let uploads_before = mirror_jobs(&mirror).0;
        let second = steps.handle(queue, &d.body).await.unwrap();
        assert_eq!(second, Outcome::Done, "{}", queue.as_str());
        assert_eq!(
            stored_json(&t, &id).await,
            run_before,
            "a second {} delivery changed the run",
            queue.as_str()
        );
        assert_eq!(
            queue_counts(&t).await,
            queues_before,
            "a second {} delivery sent a message",
            queue.as_str()
        );
        assert_eq!(
            mirror_jobs(&mirror).0,
            uploads_before,
            "a second {} delivery reached the Space",
            queue.as_str()
        );
    }

    let done = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["attempt"], 1, "{done}");
    let arts = done["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 1, "{done}");
    assert_eq!(arts[0]["name"], "scene");
    let stored = t.stored(&id).await;
    assert!(
        t.stack
            .steps
            .ports
            .blobs
            .head(&stored.artifacts[0].key)
            .await
            .unwrap()
            .is_some()
    );
    // One upload call and one /gradio_demo run reached the Space; every queue is empty.
    assert_eq!(mirror_jobs(&mirror), (1, 1), "{}", mirror.output());
    for (q, depth, in_flight, dead) in queue_counts(&t).await {
        assert_eq!((depth, in_flight, dead), (0, 0, 0), "{q}");
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_delivered_twice_at_once_acts_once_and_joins_the_space_once() {
    let mirror = MirrorSpace::start().unwrap();
    let t = manual_stack(&mirror).await;
    let id = queued_run(&t, "twice.png").await;
    let steps = &t.stack.steps;

    for (queue, after, next) in [
        (QueueName::SubmitSpace, Status::Running, Some("poll-status")),
        (
            QueueName::PollStatus,
            Status::Fetching,
            Some("fetch-artifact"),
        ),
        (QueueName::FetchArtifact, Status::Succeeded, None),
    ] {
        let d = receive_one(&t, queue).await;
        let (a, b) = tokio::join!(steps.handle(queue, &d.body), steps.handle(queue, &d.body));
        let name = queue.as_str();
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            (Outcome::Done, Outcome::Done),
            "{name}"
        );
        steps.ports.queue.delete(queue, &d.receipt).await.unwrap();

        let run = t.stored(&id).await;
        assert_eq!(run.status, after, "after {name}");
        assert_eq!(run.backend.attempt, 1, "after {name}");
        // Exactly one message for the next step, nothing else.
        let counts = queue_counts(&t).await;
        for (q, depth, in_flight, dead) in &counts {
            let want = u64::from(Some(*q) == next);
            assert_eq!(
                (*depth, *in_flight, *dead),
                (want, 0, 0),
                "after {name}: {counts:?}"
            );
        }
        // One upload call reached the Space, whatever the step.
        assert_eq!(
            mirror_jobs(&mirror).0,
            1,
            "after {name}: {}",
            mirror.output()
        );
    }

    let done = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 1, "{done}");
    // /gradio_demo ran once.
    assert_eq!(mirror_jobs(&mirror), (1, 1), "{}", mirror.output());
    t.stack.shutdown().await;
}
