//! The AWS adapters against a real moto server (S3, SQS, DynamoDB): the same contract suites as
//! the embedded adapters (the blob store's with a large object over S3's multipart threshold),
//! plus what moto can show of presigned URLs over HTTP. Each test starts its own server and
//! names its resources randomly.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};
use spaceport_aws::s3::PART_SIZE;
use spaceport_aws::{AwsStack, DynamoRunStore};
use spaceport_contract::{
    BlobContractOptions, QueueContractOptions, blob_store_contract_with, queue_contract_with,
    run_store_contract, sample_run,
};
use spaceport_core::Error;
use spaceport_core::ports::{BlobStore, Idempotency, InsertOutcome, RunStore};
use spaceport_testkit::MotoServer;

async fn sdk(moto: &MotoServer) -> SdkConfig {
    spaceport_aws::emulator_sdk_config(moto.url(), "testing").await
}

fn suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// A stack on fresh resources: a table, a bucket and the five queues with dead-letter queues.
async fn stack(moto: &MotoServer, max_receives: u32) -> AwsStack {
    let sdk = sdk(moto).await;
    let prefix = format!("t{}", suffix());
    let cfg = AwsStack::provision(&sdk, &prefix, max_receives, true)
        .await
        .expect("creating the table, bucket and queues");
    AwsStack::new(&sdk, &cfg)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn dynamo_store_meets_the_run_store_contract() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    // The feed's lag is a production margin; the contract checks its order and completeness.
    let store = stack
        .store
        .as_ref()
        .clone()
        .with_feed_lag(std::time::Duration::ZERO);
    run_store_contract(&store).await;
}

#[tokio::test]
async fn dynamo_store_meets_the_delivery_store_contract() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    spaceport_contract::delivery_store_contract(stack.store.as_ref()).await;
}

#[tokio::test]
async fn sqs_queue_meets_the_queue_contract() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    let opts = QueueContractOptions {
        max_receives: 5,
        oldest_age: false,
        ..Default::default()
    };
    queue_contract_with(stack.queue.as_ref(), &opts).await;
}

// Concurrent inserts under one key are not tested here: moto applies a transaction by
// snapshotting the table and restoring it on failure, so concurrent requests are not isolated
// (measured: a losing run's item survived). DynamoDB's transactions are serializable.

#[tokio::test]
async fn a_transaction_cancelled_by_an_existing_run_id_is_a_conflict_and_records_no_key() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    let store: &DynamoRunStore = stack.store.as_ref();
    let first = sample_run("idem-cancel", chrono::Utc::now());
    assert!(matches!(
        store.insert(&first, None).await.unwrap(),
        InsertOutcome::Inserted
    ));
    // A fresh key with a run id that exists: the transaction is cancelled by the run's condition.
    let idem = Idempotency {
        key: format!("key-{}", suffix()),
        request_hash: "h1".into(),
    };
    let mut same_id = sample_run("idem-cancel", chrono::Utc::now());
    same_id.id = first.id.clone();
    same_id.metadata.insert("other".into(), true.into());
    let err = store.insert(&same_id, Some(&idem)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(
        store.get(&first.id).await.unwrap().unwrap(),
        first,
        "the stored run is untouched"
    );
    // The key was not recorded: it still creates a run.
    let next = sample_run("idem-cancel", chrono::Utc::now());
    assert!(matches!(
        store.insert(&next, Some(&idem)).await.unwrap(),
        InsertOutcome::Inserted
    ));
    match store
        .insert(&sample_run("idem-cancel", chrono::Utc::now()), Some(&idem))
        .await
    {
        Ok(InsertOutcome::Existing(run)) => assert_eq!(run.id, next.id),
        other => panic!("the key now names the second run: {other:?}"),
    }
}

#[tokio::test]
async fn s3_store_meets_the_blob_store_contract() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    // Over two parts and a remainder, so the large object goes through multipart.
    let opts = BlobContractOptions {
        large_size: 20 * 1024 * 1024 + 17,
        ..Default::default()
    };
    assert!(opts.large_size > 2 * PART_SIZE);
    blob_store_contract_with(stack.blobs.as_ref(), &opts).await;
}

// The presigned-URL contract does not run on moto: moto does not check presigned signatures
// (measured; ARCHITECTURE.md), so its refusals would not hold. seaweed.rs runs it on SeaweedFS,
// which does; this test checks what moto can: the URL's signed terms and a round trip over HTTP.
#[tokio::test]
async fn s3_presigned_upload_and_download_work_over_http() {
    let moto = MotoServer::start().unwrap();
    let stack = stack(&moto, 5).await;
    let blobs = stack.blobs.as_ref();
    let bytes: Vec<u8> = (0..50_000).map(|i| (i % 253) as u8).collect();
    let target = blobs
        .presign_upload(
            "runs/x/inputs/images/0",
            "image/png",
            bytes.len() as u64,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(target.method, "PUT");
    assert!(
        target.url.contains("X-Amz-Signature="),
        "a SigV4 presigned URL: {}",
        target.url
    );
    // S3 refuses any other size or type, or a missing create-only condition, because those
    // headers are signed (moto does not check signatures, so the URL itself is what this asserts).
    let signed = target
        .url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("X-Amz-SignedHeaders");
    assert_eq!(
        signed, "content-length%3Bcontent-type%3Bhost%3Bif-none-match",
        "{}",
        target.url
    );
    assert_eq!(
        target.headers,
        std::collections::BTreeMap::from([
            ("content-length".to_owned(), bytes.len().to_string()),
            ("content-type".to_owned(), "image/png".to_owned()),
            ("if-none-match".to_owned(), "*".to_owned()),
        ]),
        "the client is told the headers to send"
    );
    let http = reqwest::Client::new();
    let mut put = http.put(&target.url).body(bytes.clone());
    for (k, v) in &target.headers {
        put = put.header(k, v);
    }
    let res = put.send().await.unwrap();
    assert!(
        res.status().is_success(),
        "upload answered {}",
        res.status()
    );
    // A client's upload carries no recorded hash: head computes it.
    let head = blobs.head("runs/x/inputs/images/0").await.unwrap().unwrap();
    assert_eq!(head.size, bytes.len() as u64);
    assert_eq!(head.sha256, sha256(&bytes));
    assert_eq!(head.content_type, "image/png");
    // The URL replayed with other bytes after the input landed: refused, nothing replaced.
    let other: Vec<u8> = bytes.iter().map(|b| b.wrapping_add(1)).collect();
    let mut again = http.put(&target.url).body(other);
    for (k, v) in &target.headers {
        again = again.header(k, v);
    }
    let res = again.send().await.unwrap();
    assert_eq!(res.status(), 412, "a replayed upload URL");
    let kept = blobs.head("runs/x/inputs/images/0").await.unwrap().unwrap();
    assert_eq!(kept.sha256, sha256(&bytes), "the landed bytes are kept");

    let (url, expires) = blobs
        .presign_download(
            "runs/x/inputs/images/0",
            Some("photo 1.png"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(expires > chrono::Utc::now());
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let disposition = res
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        disposition.as_deref(),
        Some("attachment; filename=\"photo 1.png\"; filename*=UTF-8''photo%201.png")
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn an_expired_idempotency_key_not_yet_deleted_by_ttl_is_free_again() {
    let moto = MotoServer::start().unwrap();
    let sdk = sdk(&moto).await;
    let stack = stack(&moto, 5).await;
    let store: &DynamoRunStore = stack.store.as_ref();
    let key = format!("key-{}", suffix());
    // What a day-old key looks like until DynamoDB's TTL gets round to deleting it.
    aws_sdk_dynamodb::Client::new(&sdk)
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(format!("idem#{key}")))
        .item(
            "run_id",
            AttributeValue::S("run_01JD8X5V3W0000000000000000".into()),
        )
        .item("request_hash", AttributeValue::S("old".into()))
        .item(
            "expires_at",
            AttributeValue::N((chrono::Utc::now().timestamp() - 10).to_string()),
        )
        .send()
        .await
        .unwrap();
    let idem = Idempotency {
        key,
        request_hash: "new".into(),
    };
    let run = sample_run("idem-expired", chrono::Utc::now());
    assert!(
        matches!(
            store.insert(&run, Some(&idem)).await,
            Ok(InsertOutcome::Inserted)
        ),
        "an expired key is neither a conflict nor an old run"
    );
    match store
        .insert(&sample_run("idem-expired", chrono::Utc::now()), Some(&idem))
        .await
    {
        Ok(InsertOutcome::Existing(r)) => assert_eq!(r.id, run.id),
        other => panic!("the key now names the new run: {other:?}"),
    }
}

/// Settings kept in Secrets Manager: each `SPACEPORT_<SETTING>_ARN` becomes the setting, parsed
/// as its variable would be (a comma list, JSON); a secret that cannot be read is named (its
/// variable and ARN) without a value; a setting given both ways is refused; and a configuration
/// read without the AWS resolution refuses an `_ARN` variable instead of ignoring it.
#[tokio::test]
async fn settings_are_read_from_secrets_manager() {
    use spaceport_stack::config::{Config, resolve_secret_vars};
    let moto = MotoServer::start().unwrap();
    let sdk = sdk(&moto).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let put = async |name: &str, value: &str| {
        sm.create_secret()
            .name(format!("{name}-{}", suffix()))
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn
            .unwrap()
    };
    let hf = put("hf", "hf_from_the_secret").await;
    let webhooks = put(
        "webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    )
    .await;
    let hash = spaceport_core::auth::hash_text(&spaceport_core::auth::key_hash("sk_x"));
    let keys = put(
        "keys",
        &serde_json::json!([{"name": "ops", "tenant": "t", "scopes": ["admin"], "hash": hash}])
            .to_string(),
    )
    .await;
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let vars = vec![
        var("SPACEPORT_HF_TOKEN_ARN", &hf),
        var("SPACEPORT_WEBHOOK_SECRETS_ARN", &webhooks),
        var("SPACEPORT_API_KEYS_ARN", &keys),
        var("SPACEPORT_CORS_ORIGINS", "https://app.example.com"),
    ];
    let resolved = resolve_secret_vars(vars, &sdk).await.unwrap();
    assert!(resolved.iter().all(|(k, _)| !k.ends_with("_ARN")));
    let cfg = Config::from_sources(None, resolved).unwrap();
    assert_eq!(cfg.hf_token.unwrap().expose(), "hf_from_the_secret");
    assert_eq!(cfg.webhook_secrets.len(), 2);
    assert_eq!(cfg.api_keys.len(), 1);
    assert_eq!(cfg.cors_origins, ["https://app.example.com"]);

    let missing = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-{}",
        suffix()
    );
    let e = resolve_secret_vars(vec![var("SPACEPORT_RUN_TOKEN_SECRET_ARN", &missing)], &sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SPACEPORT_RUN_TOKEN_SECRET_ARN") && e.contains(&missing),
        "{e}"
    );

    let e = resolve_secret_vars(
        vec![
            var("SPACEPORT_HF_TOKEN", "hf_plain"),
            var("SPACEPORT_HF_TOKEN_ARN", &hf),
        ],
        &sdk,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("both set"), "{e}");
    assert!(
        !e.contains("hf_plain") && !e.contains("hf_from_the_secret"),
        "{e}"
    );

    let e = Config::from_sources(None, vec![var("SPACEPORT_HF_TOKEN_ARN", &hf)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("SPACEPORT_HF_TOKEN_ARN"), "{e}");
}
