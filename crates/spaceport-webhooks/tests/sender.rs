//! `HttpSender` against a real receiver (`tests/peers/webhook_receiver`) that verifies every
//! delivery with the Standard Webhooks reference library: signatures verify (during a rotation
//! with either secret alone), redirects are not followed, a slow receiver is cut at the timeout,
//! 410 and 429 (with `Retry-After`) come back as they are, and the guard keeps loopback out
//! unless it is allowed.

use std::time::Duration;

use spaceport_core::outbound::{Allow, OutboundGuard};
use spaceport_core::ports::WebhookSender;
use spaceport_testkit::{WebhookReceiver, free_port};
use spaceport_webhooks::{HttpSender, SigningSecret};

fn loopback_allowed() -> OutboundGuard {
    OutboundGuard::new(vec![Allow::parse("127.0.0.1").unwrap()])
}

fn secret(fill: u8) -> SigningSecret {
    SigningSecret::from_key(vec![fill; 32])
}

const BODY: &str = r#"{"type":"run.succeeded","timestamp":"2026-11-29T00:00:00Z","data":{"id":"run_x","status":"succeeded"}}"#;

#[tokio::test]
async fn a_signed_delivery_verifies_with_either_secret_during_a_rotation() {
    let (old, new) = (secret(1), secret(2));
    let holds_old = WebhookReceiver::start(&[old.to_whsec()]).unwrap();
    let holds_new = WebhookReceiver::start(&[new.to_whsec()]).unwrap();
    let sender = HttpSender::new(loopback_allowed(), Duration::from_secs(5), vec![new, old]);
    for r in [&holds_old, &holds_new] {
        let out = sender
            .send("run", &format!("{}/ok/a", r.url()), "msg_1", BODY)
            .await;
        assert_eq!(out.status, Some(200), "{out:?}");
        assert_eq!(out.error, None);
        let got = r.records_of("/ok/a").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["verified"], true, "{}", got[0]);
        assert_eq!(got[0]["id"], "msg_1");
        assert_eq!(got[0]["body"], BODY);
    }
    // A receiver holding a secret nobody signs with does not verify it.
    let stranger = WebhookReceiver::start(&[secret(9).to_whsec()]).unwrap();
    sender
        .send("run", &format!("{}/ok/b", stranger.url()), "msg_2", BODY)
        .await;
    assert_eq!(stranger.records_of("/ok/b").unwrap()[0]["verified"], false);
}

#[tokio::test]
async fn receivers_answers_come_back_as_they_are() {
    let s = secret(3);
    let r = WebhookReceiver::start(&[s.to_whsec()]).unwrap();
    let sender = HttpSender::new(loopback_allowed(), Duration::from_secs(1), vec![s]);
    let send = |path: &str| {
        let url = format!("{}{path}", r.url());
        let sender = sender.clone();
        async move { sender.send("run", &url, "msg_1", BODY).await }
    };

    let moved = send("/moved/a").await;
    assert_eq!(moved.status, Some(301));
    assert!(moved.error.unwrap().contains("redirect"));
    assert!(
        r.records_of("/ok/a").unwrap().is_empty(),
        "the redirect was not followed"
    );

    let gone = send("/gone/a").await;
    assert_eq!(gone.status, Some(410));

    let limited = send("/limited/a?n=1&after=7").await;
    assert_eq!(limited.status, Some(429));
    assert_eq!(limited.retry_after, Some(Duration::from_secs(7)));

    let slow = send("/slow/a?s=4").await;
    assert_eq!(slow.status, None);
    assert!(
        slow.error.unwrap().contains("no answer within"),
        "cut at the timeout"
    );
    assert!(slow.latency < Duration::from_secs(3), "{:?}", slow.latency);

    let down = HttpSender::new(loopback_allowed(), Duration::from_secs(1), vec![secret(3)])
        .send(
            "run",
            &format!("http://127.0.0.1:{}/ok/x", free_port()),
            "msg_1",
            BODY,
        )
        .await;
    assert_eq!(down.status, None);
    assert!(down.error.unwrap().contains("connect"));
}

#[tokio::test]
async fn the_guard_keeps_private_addresses_out_unless_allowed_and_unsigned_never_goes() {
    let s = secret(4);
    let r = WebhookReceiver::start(&[s.to_whsec()]).unwrap();
    let url = format!("{}/ok/guarded", r.url());
    let strict = HttpSender::new(
        OutboundGuard::default(),
        Duration::from_secs(2),
        vec![s.clone()],
    );
    let out = strict.send("run", &url, "msg_1", BODY).await;
    assert_eq!(out.status, None);
    assert!(out.error.unwrap().contains("outbound_allow"));
    let unsigned = HttpSender::new(loopback_allowed(), Duration::from_secs(2), vec![]);
    let out = unsigned.send("run", &url, "msg_1", BODY).await;
    assert!(out.error.unwrap().contains("signing secret"));
    assert!(
        r.records_of("/ok/guarded").unwrap().is_empty(),
        "nothing reached it"
    );
    // An endpoint with its own secrets signs with those.
    let own = secret(5);
    let r2 = WebhookReceiver::start(&[own.to_whsec()]).unwrap();
    let sender = HttpSender::new(loopback_allowed(), Duration::from_secs(2), vec![s])
        .with_endpoint_secrets("billing", vec![own]);
    sender
        .send("billing", &format!("{}/ok/own", r2.url()), "msg_1", BODY)
        .await;
    assert_eq!(r2.records_of("/ok/own").unwrap()[0]["verified"], true);
}
