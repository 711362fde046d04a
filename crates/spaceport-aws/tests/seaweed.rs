//! The S3 blob store's presigned URLs against SeaweedFS, which checks SigV4 signatures as S3 does
//! (moto does not): an upload must be exactly the declared size and content type, unaltered and
//! in time, or S3 refuses it with 403 and stores nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spaceport_aws::{AwsConfig, AwsStack};
use spaceport_core::ports::BlobStore;
use spaceport_testkit::SeaweedS3;

async fn blobs(s3: &SeaweedS3) -> AwsStack {
    let sdk = spaceport_aws::emulator_sdk_config(s3.url(), SeaweedS3::KEY).await;
    let cfg = AwsConfig {
        runs_table: "unused".into(),
        blobs_bucket: format!("uploads-{:08x}", rand::random::<u32>()),
        queues: BTreeMap::new(),
        s3_path_style: true,
    };
    let stack = AwsStack::new(&sdk, &cfg);
    // The gateway answers before its filer takes writes on a loaded machine: retry, bounded.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = stack.blobs.create_bucket().await {
        assert!(
            std::time::Instant::now() < until,
            "creating the bucket: {e}\n{}",
            s3.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack
}

/// PUTs `body` with `content_type` to `url`, with the target's other headers except the length
/// (the client sends the body's real length).
async fn put(
    url: &str,
    headers: &BTreeMap<String, String>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().put(url).body(body);
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("content-type") {
            req = req.header(k, v);
        }
    }
    let res = req
        .header("content-type", content_type)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn s3_refuses_uploads_that_break_the_presigned_terms_and_keeps_what_was_stored() {
    let s3 = SeaweedS3::start().unwrap();
    let stack = blobs(&s3).await;
    let blobs = stack.blobs.as_ref();
    let key = "runs/run_x/inputs/images/0";
    let good: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    let target = blobs
        .presign_upload(
            key,
            "image/png",
            good.len() as u64,
            Duration::from_secs(600),
        )
        .await
        .unwrap();

    let (status, body) = put(&target.url, &target.headers, "image/png", good.clone()).await;
    assert_eq!(status, 200, "the declared upload is accepted: {body}");
    let stored = blobs.head(key).await.unwrap().expect("stored");
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&good)));

    let tampered = target
        .url
        .replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1);
    for (what, url, content_type, body) in [
        (
            "one byte more",
            target.url.as_str(),
            "image/png",
            vec![7u8; 1001],
        ),
        (
            "one byte less",
            target.url.as_str(),
            "image/png",
            vec![7u8; 999],
        ),
        (
            "another type",
            target.url.as_str(),
            "image/jpeg",
            vec![7u8; 1000],
        ),
        (
            "a tampered signature",
            tampered.as_str(),
            "image/png",
            vec![7u8; 1000],
        ),
    ] {
        let (status, text) = put(url, &target.headers, content_type, body).await;
        assert_eq!(status, 403, "{what} must be refused: {text}");
        assert!(
            text.contains("SignatureDoesNotMatch") || text.contains("AccessDenied"),
            "{what}: S3's error code, got {text}"
        );
        assert_eq!(
            blobs.head(key).await.unwrap(),
            Some(stored.clone()),
            "{what}: the stored object is untouched"
        );
    }

    let late_key = "runs/run_x/inputs/images/1";
    let short = blobs
        .presign_upload(late_key, "image/png", 10, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, text) = put(&short.url, &short.headers, "image/png", vec![1u8; 10]).await;
    assert_eq!(status, 403, "an expired URL must be refused: {text}");
    assert!(
        blobs.head(late_key).await.unwrap().is_none(),
        "nothing stored"
    );

    let (url, _) = blobs
        .presign_download(key, Some("a.png"), Duration::from_secs(60))
        .await
        .unwrap();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), good.as_slice());
    let res = reqwest::get(url.replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1))
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a tampered download URL is refused");
}
