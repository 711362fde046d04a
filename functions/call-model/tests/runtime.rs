//! The call-model bootstrap run as Lambda runs it: started with Lambda's variables against a Runtime
//! API emulator and moto, it answers `events/call-model/*.json` and a batch of ten step messages
//! through the real `lambda_runtime` loop. Prints its cold start and peak RSS.

use spaceport_testkit::aws::AwsEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_answers_its_events_through_the_runtime_api() {
    let env = AwsEnv::start("rt", 5).await.unwrap();
    let binary =
        &spaceport_testkit::lambda_rt::bootstrap("call-model", env!("CARGO_BIN_EXE_call-model"));
    let report = env
        .run_bootstrap(binary, "call-model", &[], true)
        .await
        .unwrap();
    report.assert_answered("call-model");
}
