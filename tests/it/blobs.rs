//! The presigned-URL contract against the local server: the directory store's URLs point at the
//! stack's own `/v1/uploads/…` and `/v1/blobs/…`, so the same cases S3 meets on SeaweedFS are
//! sent over HTTP here, refused with the API's statuses and error codes.

use std::time::Duration;

use spaceport_contract::{PresignExpectations, Refusal, presigned_url_contract};

use crate::common::*;

/// What the server answers (`routes::upload`/`download`, statuses from `Error::http_status`).
fn local_server() -> PresignExpectations {
    let signature = Refusal {
        status: 403,
        codes: &["upload_signature_invalid"],
    };
    PresignExpectations {
        signature_param: "sig",
        one_byte_more: Refusal {
            status: 413,
            codes: &["payload_too_large"],
        },
        one_byte_less: Refusal {
            status: 422,
            codes: &["validation_failed"],
        },
        other_content_type: signature,
        tampered_signature: signature,
        expired: Refusal {
            status: 403,
            codes: &["upload_expired"],
        },
        tampered_download: signature,
        // `exp` is a whole second and a URL is good through it.
        expiry_grace: Duration::from_millis(1200),
        content_disposition: Some("attachment; filename=\"photo 1.png\""),
    }
}

#[tokio::test]
async fn the_local_server_meets_the_presigned_url_contract() {
    let dead = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    let t = TestStack::start(&dead).await.unwrap();
    presigned_url_contract(t.stack.steps.ports.blobs.as_ref(), &local_server()).await;
}
