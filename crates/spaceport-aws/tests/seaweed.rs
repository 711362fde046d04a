//! The S3 blob store's presigned URLs against SeaweedFS, which checks SigV4 signatures as S3 does
//! (moto does not): the shared presigned-URL contract, the same cases the local server meets, with
//! S3's answers (403 and AWS's error codes) to an upload that breaks the terms.

use std::collections::BTreeMap;
use std::time::Duration;

use spaceport_aws::{AwsConfig, AwsStack};
use spaceport_contract::{PresignExpectations, Refusal, presigned_url_contract};
use spaceport_core::ports::BlobStore;
use spaceport_testkit::SeaweedS3;

async fn blobs(s3: &SeaweedS3) -> AwsStack {
    let sdk = spaceport_aws::emulator_sdk_config(s3.url(), SeaweedS3::KEY).await;
    let cfg = AwsConfig {
        runs_table: "unused".into(),
        blobs_bucket: format!("uploads-{:08x}", rand::random::<u32>()),
        queues: BTreeMap::new(),
        s3_path_style: true,
        event_bus: None,
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
    // Its volumes take writes a while later still (a first upload was answered 500
    // InternalError in CI): write a probe until one lands, bounded, then remove it.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"probe")) });
        match stack
            .blobs
            .put("ready-probe", "text/plain", Box::pin(body))
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < until,
                "no write landed: {e}\n{}",
                s3.output()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.blobs.delete("ready-probe").await.unwrap();
    stack
}

/// What S3 answers, and SeaweedFS with it (measured): size and type are signed headers, so
/// breaking either term is a signature mismatch, as is a tampered signature; a URL past its
/// expiry is denied.
fn s3() -> PresignExpectations {
    let mismatch = Refusal {
        status: 403,
        codes: &["SignatureDoesNotMatch"],
    };
    PresignExpectations {
        signature_param: "X-Amz-Signature",
        one_byte_more: mismatch,
        one_byte_less: mismatch,
        other_content_type: mismatch,
        tampered_signature: mismatch,
        expired: Refusal {
            status: 403,
            codes: &["AccessDenied"],
        },
        tampered_download: mismatch,
        // SigV4 counts the TTL from the signing time's whole second.
        expiry_grace: Duration::from_millis(1500),
        content_disposition: Some(
            "attachment; filename=\"photo 1.png\"; filename*=UTF-8''photo%201.png",
        ),
    }
}

#[tokio::test]
async fn s3_meets_the_presigned_url_contract_on_seaweedfs() {
    let s3_server = SeaweedS3::start().unwrap();
    let stack = blobs(&s3_server).await;
    presigned_url_contract(stack.blobs.as_ref(), &s3()).await;
}
