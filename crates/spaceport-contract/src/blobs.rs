//! The blob-store suites: the port's own operations (`blob_store_contract`) and the presigned
//! URLs' terms over real HTTP (`presigned_url_contract`), the same cases for S3 and the local
//! server. What legitimately differs per adapter (refusal statuses and error codes, the
//! signature's query parameter, clock granularity) comes in as `PresignExpectations`.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use spaceport_core::Error;
use spaceport_core::ports::{BlobMeta, BlobStore, ByteStream, UploadTarget};

/// Sizes of the blob-store checks.
#[derive(Debug, Clone)]
pub struct BlobContractOptions {
    /// Size of the large object. The default, over 20 MiB, takes an S3 adapter across its 8 MiB
    /// multipart threshold; every adapter streams the same object.
    pub large_size: usize,
    /// Size of the chunks a large body is streamed in.
    pub chunk: usize,
}

impl Default for BlobContractOptions {
    fn default() -> Self {
        BlobContractOptions {
            large_size: 20 * 1024 * 1024 + 17,
            chunk: 64 * 1024,
        }
    }
}

/// Runs every blob-store check with the default options.
pub async fn blob_store_contract(store: &dyn BlobStore) {
    blob_store_contract_with(store, &BlobContractOptions::default()).await;
}

/// Runs every blob-store check.
pub async fn blob_store_contract_with(store: &dyn BlobStore, opts: &BlobContractOptions) {
    blob_put_get_head_delete_round_trip(store).await;
    blob_overwrite_replaces_the_object_and_its_sha256(store).await;
    blob_absent_key_has_no_head_is_not_found_and_deletes_fine(store).await;
    blob_large_object_streams_back_whole(store, opts).await;
    blob_copy_holds_the_same_object_and_outlives_its_source(store).await;
}

/// A key no other check or test uses; `contract/…` names no run, so a server ignores it.
fn unique_blob_key(check: &str, name: &str) -> String {
    format!("contract/{check}/{:032x}/{name}", rand::random::<u128>())
}

/// `len` bytes that differ with `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed as usize * 7) % 251) as u8)
        .collect()
}

fn body_of(bytes: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn meta_of(bytes: &[u8], content_type: &str) -> BlobMeta {
    BlobMeta {
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        content_type: content_type.to_owned(),
    }
}

/// The object's bytes, read through `get`'s stream.
async fn read_object(store: &dyn BlobStore, key: &str, c: &str) -> Vec<u8> {
    let mut stream = store.get(key).await.expect(c);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect(c));
    }
    out
}

/// Asserts `get` of `key` is `NotFound`.
async fn assert_get_not_found(store: &dyn BlobStore, key: &str, c: &str, why: &str) {
    match store.get(key).await {
        Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("[contract {c}] {why}: get must be NotFound, got {e:?}"),
        Ok(_) => panic!("[contract {c}] {why}: get must be NotFound, got a stream"),
    }
}

/// `put` streamed in several chunks returns the size, sha256 and type; `head` and `get` give
/// them back; after `delete` there is no head and `get` is `NotFound`, and deleting again is fine.
pub async fn blob_put_get_head_delete_round_trip(store: &dyn BlobStore) {
    let c = "blob_put_get_head_delete_round_trip";
    let key = unique_blob_key(c, "object.txt");
    let content_type = "text/plain; charset=utf-8";
    let bytes = pattern(100_000, 1);
    let meta = store
        .put(&key, content_type, body_of(&bytes, 7_001))
        .await
        .expect(c);
    assert_eq!(
        meta,
        meta_of(&bytes, content_type),
        "[contract {c}] put must return the size, sha256 and content type of what it stored"
    );
    assert_eq!(
        store.head(&key).await.expect(c),
        Some(meta),
        "[contract {c}] head must report what put stored"
    );
    assert!(
        read_object(store, &key, c).await == bytes,
        "[contract {c}] get must stream back the bytes put stored"
    );
    store.delete(&key).await.expect(c);
    assert_eq!(
        store.head(&key).await.expect(c),
        None,
        "[contract {c}] a deleted object has no head"
    );
    assert_get_not_found(store, &key, c, "a deleted object").await;
    store.delete(&key).await.unwrap_or_else(|e| {
        panic!("[contract {c}] deleting an already deleted object must be fine, got {e:?}")
    });
}

/// `copy` makes a second object with the same bytes, sha256 and type, which stays when the
/// source is deleted; copying an absent key is `NotFound`.
pub async fn blob_copy_holds_the_same_object_and_outlives_its_source(store: &dyn BlobStore) {
    let c = "blob_copy_holds_the_same_object_and_outlives_its_source";
    let (from, to) = (unique_blob_key(c, "from.png"), unique_blob_key(c, "to.png"));
    let bytes = pattern(70_000, 3);
    let meta = store
        .put(&from, "image/png", body_of(&bytes, 9_000))
        .await
        .expect(c);
    let copied = store.copy(&from, &to).await.expect(c);
    assert_eq!(
        copied, meta,
        "[contract {c}] a copy reports the source's meta"
    );
    assert_eq!(
        store.head(&to).await.expect(c),
        Some(meta),
        "[contract {c}] head of the copy"
    );
    store.delete(&from).await.expect(c);
    assert!(
        read_object(store, &to, c).await == bytes,
        "[contract {c}] the copy streams back the bytes after its source is deleted"
    );
    store.delete(&to).await.expect(c);
    let absent = store.copy(&from, &to).await.unwrap_err();
    assert!(
        matches!(absent, spaceport_core::Error::NotFound { .. }),
        "[contract {c}] copying an absent key is NotFound, got {absent:?}"
    );
}

/// A second `put` of a key replaces the bytes, the sha256 and the content type together.
pub async fn blob_overwrite_replaces_the_object_and_its_sha256(store: &dyn BlobStore) {
    let c = "blob_overwrite_replaces_the_object_and_its_sha256";
    let key = unique_blob_key(c, "object.bin");
    let first = pattern(5_000, 2);
    let second = pattern(3_000, 3);
    let old = store
        .put(&key, "text/plain", body_of(&first, 2_000))
        .await
        .expect(c);
    let new = store
        .put(&key, "image/png", body_of(&second, 1_000))
        .await
        .expect(c);
    assert_eq!(
        new,
        meta_of(&second, "image/png"),
        "[contract {c}] the overwriting put must return the new object's size, sha256 and type"
    );
    assert_ne!(
        old.sha256, new.sha256,
        "[contract {c}] different bytes have different sha256s"
    );
    assert_eq!(
        store.head(&key).await.expect(c),
        Some(new),
        "[contract {c}] head must report the new object, not the old one"
    );
    assert!(
        read_object(store, &key, c).await == second,
        "[contract {c}] get must stream back the new bytes"
    );
    store.delete(&key).await.expect(c);
}

/// A key never written has no head, `get` is `NotFound`, and deleting it is fine (and creates
/// nothing).
pub async fn blob_absent_key_has_no_head_is_not_found_and_deletes_fine(store: &dyn BlobStore) {
    let c = "blob_absent_key_has_no_head_is_not_found_and_deletes_fine";
    let key = unique_blob_key(c, "never-written.bin");
    assert_eq!(
        store.head(&key).await.expect(c),
        None,
        "[contract {c}] an absent key has no head"
    );
    assert_get_not_found(store, &key, c, "an absent key").await;
    store.delete(&key).await.unwrap_or_else(|e| {
        panic!("[contract {c}] deleting an absent key must be fine, got {e:?}")
    });
    assert_eq!(
        store.head(&key).await.expect(c),
        None,
        "[contract {c}] deleting an absent key creates nothing"
    );
}

/// An object of `opts.large_size` bytes, streamed in `opts.chunk`-sized chunks, is stored with
/// its size and sha256 and streams back whole.
pub async fn blob_large_object_streams_back_whole(
    store: &dyn BlobStore,
    opts: &BlobContractOptions,
) {
    let c = "blob_large_object_streams_back_whole";
    let key = unique_blob_key(c, "large.bin");
    let bytes = pattern(opts.large_size, 4);
    let meta = store
        .put(
            &key,
            "application/octet-stream",
            body_of(&bytes, opts.chunk),
        )
        .await
        .expect(c);
    assert_eq!(
        meta,
        meta_of(&bytes, "application/octet-stream"),
        "[contract {c}] put of {} bytes must return their size and sha256",
        opts.large_size
    );
    assert_eq!(
        store.head(&key).await.expect(c),
        Some(meta),
        "[contract {c}] head must report what put stored"
    );
    let got = read_object(store, &key, c).await;
    assert_eq!(
        got.len(),
        bytes.len(),
        "[contract {c}] get must stream back every byte"
    );
    assert!(
        got == bytes,
        "[contract {c}] get must stream back the bytes put stored (sha256 {} instead of {})",
        sha256_hex(&got),
        sha256_hex(&bytes)
    );
    store.delete(&key).await.expect(c);
}

/// How an adapter refuses a request that breaks a presigned URL's terms.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    /// The HTTP status (a 4xx).
    pub status: u16,
    /// The error codes the body may name, any one of them: S3's `<Code>` or the API's
    /// `error.code`.
    pub codes: &'static [&'static str],
}

/// What legitimately differs between adapters in the presigned-URL checks.
#[derive(Debug, Clone)]
pub struct PresignExpectations {
    /// The query parameter holding the URL's signature (`X-Amz-Signature` for SigV4); the
    /// tampering checks change its last character.
    pub signature_param: &'static str,
    /// An upload one byte longer than declared.
    pub one_byte_more: Refusal,
    /// An upload one byte shorter than declared.
    pub one_byte_less: Refusal,
    /// An upload with another Content-Type than declared.
    pub other_content_type: Refusal,
    /// An upload to the URL with its signature changed.
    pub tampered_signature: Refusal,
    /// The declared upload, after the URL expired.
    pub expired: Refusal,
    /// A download from the URL with its signature changed.
    pub tampered_download: Refusal,
    /// How long past its `expires_at` a URL may still be accepted (whole-second clocks).
    pub expiry_grace: Duration,
    /// The `Content-Disposition` a download URL for `DOWNLOAD_FILENAME` answers with; `None`
    /// where the adapter sets none.
    pub content_disposition: Option<&'static str>,
}

/// The filename the download check asks for (a space, so quoting and encoding show).
pub const DOWNLOAD_FILENAME: &str = "photo 1.png";

/// Runs every presigned-URL check over HTTP.
pub async fn presigned_url_contract(store: &dyn BlobStore, expect: &PresignExpectations) {
    presigned_upload_accepts_only_its_declared_terms(store, expect).await;
    presigned_upload_is_refused_once_expired(store, expect).await;
    presigned_download_serves_the_object_and_refuses_tampering(store, expect).await;
}

fn http(c: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect(c)
}

/// Sends `body` to `url` with the target's method and headers; with `content_type`, that type
/// and the body's own length replace the declared ones.
async fn send_upload(
    target: &UploadTarget,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    c: &str,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(target.method.as_bytes()).expect(c);
    let mut req = http(c).request(method, url).body(body);
    for (k, v) in &target.headers {
        let replaced = content_type.is_some()
            && (k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("content-type"));
        if !replaced {
            req = req.header(k, v);
        }
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("[contract {c}] the upload URL must answer: {e}"));
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// The error code an answer's body names: the API's `{"error": {"code"}}` or S3's `<Code>`.
fn error_code(body: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        return v["error"]["code"].as_str().map(str::to_owned);
    }
    let start = body.find("<Code>")? + "<Code>".len();
    let end = start + body[start..].find("</Code>")?;
    Some(body[start..end].to_owned())
}

fn assert_refused(c: &str, what: &str, refusal: &Refusal, status: u16, body: &str) {
    assert!(
        (400..500).contains(&refusal.status),
        "[contract {c}] a refusal is a 4xx, not {}",
        refusal.status
    );
    assert_eq!(
        status, refusal.status,
        "[contract {c}] {what} must be refused with {}; body: {body}",
        refusal.status
    );
    let code = error_code(body);
    assert!(
        code.as_deref().is_some_and(|k| refusal.codes.contains(&k)),
        "[contract {c}] {what}: the error code must be one of {:?}, got {code:?} in {body}",
        refusal.codes
    );
}

/// `url` with the last character of its `param` query value changed.
fn tamper_signature(url: &str, param: &str, c: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .unwrap_or_else(|| panic!("[contract {c}] a presigned URL has a query: {url}"));
    let mut found = false;
    let mut parts = Vec::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some((k, v)) if k == param && !v.is_empty() && !found => {
                found = true;
                let last = if v.ends_with('0') { '1' } else { '0' };
                parts.push(format!("{k}={}{last}", &v[..v.len() - 1]));
            }
            _ => parts.push(kv.to_owned()),
        }
    }
    assert!(
        found,
        "[contract {c}] the URL has no {param} parameter to tamper with: {url}"
    );
    format!("{base}?{}", parts.join("&"))
}

/// The declared upload (the target's method, URL and headers) is stored with its size and
/// sha256; one byte more, one byte less, another content type and a tampered signature are each
/// refused and leave the stored object exactly as it was.
pub async fn presigned_upload_accepts_only_its_declared_terms(
    store: &dyn BlobStore,
    expect: &PresignExpectations,
) {
    let c = "presigned_upload_accepts_only_its_declared_terms";
    let key = unique_blob_key(c, "image.png");
    let good = pattern(1000, 5);
    let target = store
        .presign_upload(
            &key,
            "image/png",
            good.len() as u64,
            Duration::from_secs(600),
        )
        .await
        .expect(c);
    assert!(
        target.fields.is_empty(),
        "[contract {c}] this check sends a PUT-style upload, not a POST policy form"
    );
    assert_eq!(
        target
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str()),
        Some("image/png"),
        "[contract {c}] the target must tell the client the Content-Type to send"
    );
    let (status, body) = send_upload(&target, &target.url, None, good.clone(), c).await;
    assert!(
        (200..300).contains(&status),
        "[contract {c}] the declared upload must be accepted, got {status}: {body}"
    );
    let stored = store.head(&key).await.expect(c);
    assert_eq!(
        stored,
        Some(meta_of(&good, "image/png")),
        "[contract {c}] head must show the uploaded size, sha256 and type"
    );

    let tampered = tamper_signature(&target.url, expect.signature_param, c);
    let other = |len| pattern(len, 6);
    for (what, url, content_type, bytes, refusal) in [
        (
            "one byte more",
            &target.url,
            "image/png",
            other(1001),
            &expect.one_byte_more,
        ),
        (
            "one byte less",
            &target.url,
            "image/png",
            other(999),
            &expect.one_byte_less,
        ),
        (
            "another content type",
            &target.url,
            "image/jpeg",
            other(1000),
            &expect.other_content_type,
        ),
        (
            "a tampered signature",
            &tampered,
            "image/png",
            other(1000),
            &expect.tampered_signature,
        ),
    ] {
        let (status, body) = send_upload(&target, url, Some(content_type), bytes, c).await;
        assert_refused(c, what, refusal, status, &body);
        assert_eq!(
            store.head(&key).await.expect(c),
            stored,
            "[contract {c}] {what}: the stored object must be left exactly as it was"
        );
        assert!(
            read_object(store, &key, c).await == good,
            "[contract {c}] {what}: the stored bytes must be left exactly as they were"
        );
    }
    store.delete(&key).await.expect(c);
}

/// The declared upload to a URL past its expiry (a 1 s TTL, waited out) is refused and stores
/// nothing.
pub async fn presigned_upload_is_refused_once_expired(
    store: &dyn BlobStore,
    expect: &PresignExpectations,
) {
    let c = "presigned_upload_is_refused_once_expired";
    let key = unique_blob_key(c, "late.png");
    let bytes = pattern(10, 8);
    let target = store
        .presign_upload(
            &key,
            "image/png",
            bytes.len() as u64,
            Duration::from_secs(1),
        )
        .await
        .expect(c);
    // No signal marks the passing of time: wait until the URL is past its expiry, bounded.
    let wait = (target.expires_at - Utc::now())
        .to_std()
        .unwrap_or_default()
        + expect.expiry_grace;
    assert!(
        wait <= Duration::from_secs(30),
        "[contract {c}] a 1 s URL must expire within 30 s, not {wait:?}"
    );
    tokio::time::sleep(wait).await;
    let (status, body) = send_upload(&target, &target.url, None, bytes, c).await;
    assert_refused(
        c,
        "the upload to an expired URL",
        &expect.expired,
        status,
        &body,
    );
    assert_eq!(
        store.head(&key).await.expect(c),
        None,
        "[contract {c}] a refused upload stores nothing"
    );
}

/// A download URL serves the object's bytes (with a `Content-Disposition` naming the filename,
/// where the adapter sets one); with a tampered signature it is refused.
pub async fn presigned_download_serves_the_object_and_refuses_tampering(
    store: &dyn BlobStore,
    expect: &PresignExpectations,
) {
    let c = "presigned_download_serves_the_object_and_refuses_tampering";
    let key = unique_blob_key(c, "scene.png");
    let bytes = pattern(50_000, 9);
    store
        .put(&key, "image/png", body_of(&bytes, 7_001))
        .await
        .expect(c);
    let (url, expires_at) = store
        .presign_download(&key, Some(DOWNLOAD_FILENAME), Duration::from_secs(60))
        .await
        .expect(c);
    assert!(
        expires_at > Utc::now(),
        "[contract {c}] a fresh download URL expires in the future, not at {expires_at}"
    );
    let res = http(c)
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("[contract {c}] the download URL must answer: {e}"));
    assert_eq!(
        res.status().as_u16(),
        200,
        "[contract {c}] the download URL must serve the object"
    );
    let disposition = res
        .headers()
        .get("content-disposition")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(want) = expect.content_disposition {
        assert_eq!(
            disposition.as_deref(),
            Some(want),
            "[contract {c}] the download must be offered as {DOWNLOAD_FILENAME:?}"
        );
    }
    let got = res.bytes().await.expect(c);
    assert!(
        got.as_ref() == bytes.as_slice(),
        "[contract {c}] the download must be the object's bytes ({} bytes, {} stored)",
        got.len(),
        bytes.len()
    );

    let tampered = tamper_signature(&url, expect.signature_param, c);
    let res = http(c)
        .get(&tampered)
        .send()
        .await
        .unwrap_or_else(|e| panic!("[contract {c}] the download URL must answer: {e}"));
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    assert_refused(
        c,
        "a download with a tampered signature",
        &expect.tampered_download,
        status,
        &body,
    );
    store.delete(&key).await.expect(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_the_api_json_and_s3_xml() {
        let api = r#"{"error":{"code":"upload_expired","message":"the upload URL expired"}}"#;
        assert_eq!(error_code(api).as_deref(), Some("upload_expired"));
        let s3 = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                  <Message>AccessDenied is not the code</Message></Error>";
        assert_eq!(error_code(s3).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(error_code(""), None);
        assert_eq!(error_code(r#"{"other":1}"#), None);
    }

    #[test]
    fn tampering_changes_only_the_last_character_of_the_signature() {
        let url = "http://h/k?X-Amz-Date=1&X-Amz-Signature=ab10&x=sig";
        assert_eq!(
            tamper_signature(url, "X-Amz-Signature", "t"),
            "http://h/k?X-Amz-Date=1&X-Amz-Signature=ab11&x=sig"
        );
        assert_eq!(
            tamper_signature("http://h/v1/uploads/a?size=5&sig=ff", "sig", "t"),
            "http://h/v1/uploads/a?size=5&sig=f0"
        );
    }

    #[test]
    #[should_panic(expected = "no sig parameter")]
    fn tampering_a_url_without_the_parameter_fails_loudly() {
        tamper_signature("http://h/k?exp=1", "sig", "t");
    }
}
