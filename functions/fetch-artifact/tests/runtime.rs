//! The fetch-artifact bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime
//! API emulator and moto, it answers `events/fetch-artifact/*.json` and a batch of ten step messages
//! through the real `lambda_runtime` loop, and carries ten real runs' messages handed over in
//! batches. Prints its cold start and peak RSS.

use spaceport_core::ports::QueueName;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::lambda_batches::ten_vggt_runs_through;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "fetch-artifact",
        env!("CARGO_BIN_EXE_fetch-artifact"),
    );
    let report = env
        .run_bootstrap(binary, "fetch-artifact", &[], true)
        .await
        .unwrap();
    report.assert_answered("fetch-artifact");
}

/// Ten real `vggt` runs (the vggt mirror Space, moto) whose fetch-artifact messages the bootstrap is
/// handed in batches of up to ten, as Lambda's SQS poller hands them over; the other steps run
/// in process. Prints its batches and peak RSS, the figure the template's memory size is
/// chosen from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_carries_ten_real_runs_handed_over_in_batches() {
    let binary = &spaceport_testkit::lambda_rt::bootstrap(
        "fetch-artifact",
        env!("CARGO_BIN_EXE_fetch-artifact"),
    );
    let report = ten_vggt_runs_through(binary, "fetch-artifact", QueueName::FetchArtifact).await;
    assert!(
        report.largest_batch >= 1 && report.invocations >= 1,
        "{report:?}"
    );
}
