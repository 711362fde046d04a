//! At most N jobs at a backend at once, across processes: two `spaceport serve` processes on one
//! data dir, `vggt` limited to one job in flight, eight runs against a mirror that would run five
//! at once and logs how many it runs (`INFLIGHT n`). The rest wait in `queued` with their place
//! shown on the run and in `/readyz`; without the limit the same mirror sees them together.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The most jobs the mirror ran at once, and how many it started.
fn inflight(mirror: &MirrorSpace) -> (u32, usize) {
    let counts: Vec<u32> = mirror
        .output()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("INFLIGHT "))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    (counts.iter().copied().max().unwrap_or(0), counts.len())
}

/// A run of one image named `name`, uploaded through `client`; its id.
async fn new_run(client: &spaceport_cli::client::ApiClient, name: &str, shade: u8) -> String {
    let run = create_and_upload(client, &[(name, png(40, 30, shade))], json!({}), json!({}))
        .await
        .unwrap();
    run["id"].as_str().unwrap().to_string()
}

async fn readyz(url: &str) -> Value {
    let (status, body) = send(reqwest::Client::new().get(format!("{url}/readyz"))).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_one_holds_across_two_servers_sharing_a_data_dir() {
    let mirror =
        MirrorSpace::start_with_env(&[("MIRROR_CONCURRENCY", "5"), ("MIRROR_DELAY_S", "0.7")])
            .unwrap();
    let data = tempfile::tempdir().unwrap();
    let limit = [
        ("SPACEPORT_MAX_IN_FLIGHT_VGGT", "1"),
        ("SPACEPORT_HUB_URL", ""),
    ];
    let mut servers = vec![];
    for _ in 0..2 {
        let port = spaceport_testkit::free_port();
        let s = Serve::start_with(
            data.path(),
            port,
            mirror.url(),
            "submit-space,poll-status,fetch-artifact",
            &limit,
            std::process::Stdio::null(),
        )
        .await;
        servers.push((s, format!("http://127.0.0.1:{port}")));
    }
    let mut ids = vec![];
    // Eight runs of 0.7 s each: the last waits longer than a message's five receives would
    // last, so waiting must not use them up.
    for i in 0..8 {
        let (s, _) = &servers[i % 2];
        ids.push(new_run(&s.client, &format!("r{i}.png"), i as u8).await);
    }
    // While they run: never more than one in flight, and the others waiting in line, visibly.
    let mut saw_waiting_run = false;
    let mut saw_waiting_in_readyz = false;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let r = readyz(&servers[0].1).await;
        let book = &r["backends"]["space:facebook/vggt"];
        if !book.is_null() {
            assert!(book["in_flight"].as_u64().unwrap() <= 1, "{r}");
            saw_waiting_in_readyz |= book["waiting"].as_u64().unwrap() > 0;
        }
        let mut done = 0;
        for id in &ids {
            let run = servers[1].0.client.get_run(id, None).await.unwrap();
            if run["progress"]["stage"] == "waiting_for_backend" {
                assert_eq!(run["status"], "queued", "{run}");
                assert!(run["progress"]["queue_rank"].is_u64(), "{run}");
                saw_waiting_run = true;
            }
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "expired")
            ) {
                assert_eq!(run["status"], "succeeded", "{run}");
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(Instant::now() < until, "the runs did not finish");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(saw_waiting_run && saw_waiting_in_readyz);
    let (most, started) = inflight(&mirror);
    assert_eq!(started, 8, "{}", mirror.output());
    assert_eq!(most, 1, "two jobs were at the mirror at once");
    // Every slot was given back, and no message was dead-lettered by the waiting.
    let r = readyz(&servers[1].1).await;
    assert!(r["backends"].as_object().unwrap().is_empty(), "{r}");
    for (q, stats) in r["queues"].as_object().unwrap() {
        assert_eq!(stats["dead"], 0, "{q}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_the_same_mirror_runs_jobs_together() {
    // The control for the test above: its mirror does show overlap when nothing holds runs back.
    let mirror =
        MirrorSpace::start_with_env(&[("MIRROR_CONCURRENCY", "5"), ("MIRROR_DELAY_S", "1.5")])
            .unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(new_run(&t.client, &format!("u{i}.png"), i as u8).await);
    }
    for id in &ids {
        let r = wait_terminal(&t.client, id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(inflight(&mirror).0 > 1, "{}", mirror.output());
    t.stack.shutdown().await;
}
