//! The submit-space bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime
//! API emulator and moto, it answers `events/submit-space/*.json` and a batch of ten step messages
//! through the real `lambda_runtime` loop, and carries ten real runs' messages handed over in
//! batches. Prints its cold start and peak RSS.

use spaceport_core::ports::QueueName;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::lambda_batches::ten_vggt_runs_through;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "submit-space",
        env!("CARGO_BIN_EXE_submit-space"),
    );
    let report = env
        .run_bootstrap(binary, "submit-space", &[], true)
        .await
        .unwrap();
    report.assert_answered("submit-space");
}

/// Ten real `vggt` runs (the vggt mirror Space, moto) whose submit-space messages the bootstrap is
/// handed in batches of up to ten, as Lambda's SQS poller hands them over; the other steps run
/// in process. Prints its batches and peak RSS, the figure the template's memory size is
/// chosen from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_carries_ten_real_runs_handed_over_in_batches() {
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "submit-space",
        env!("CARGO_BIN_EXE_submit-space"),
    );
    let report = ten_vggt_runs_through(binary, "submit-space", QueueName::SubmitSpace).await;
    // Every run landed before the first batch: all ten were handed over at once.
    assert_eq!(report.largest_batch, 10, "{report:?}");
}
