//! The poll-status bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime
//! API emulator and moto, it answers `events/poll-status/*.json` and a batch of ten step messages
//! through the real `lambda_runtime` loop, and carries ten real runs' messages handed over in
//! batches. Prints its cold start and peak RSS.

use spaceport_core::ports::QueueName;
use spaceport_testkit::aws::AwsEnv;
use spaceport_testkit::lambda_batches::ten_vggt_runs_through;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary =
        &spaceport_testkit::lambda_rt::bootstrap("poll-status", env!("CARGO_BIN_EXE_poll-status"));
    let report = env
        .run_bootstrap(binary, "poll-status", &[], true)
        .await
        .unwrap();
    report.assert_answered("poll-status");
}

/// Ten real `vggt` runs (the vggt mirror Space, moto) whose poll-status messages the bootstrap is
/// handed in batches of up to ten, as Lambda's SQS poller hands them over; the other steps run
/// in process. Prints its batches and peak RSS, the figure the template's memory size is
/// chosen from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_carries_ten_real_runs_handed_over_in_batches() {
    let binary =
        &spaceport_testkit::lambda_rt::bootstrap("poll-status", env!("CARGO_BIN_EXE_poll-status"));
    let report = ten_vggt_runs_through(binary, "poll-status", QueueName::PollStatus).await;
    assert!(
        report.largest_batch >= 1 && report.invocations >= 1,
        "{report:?}"
    );
}
