//! The directory store's URL signing: the key file, HMAC-SHA256 over length-prefixed fields, the
//! presigned upload and download URLs, and their verification. It owns everything a URL's
//! validity rests on, so the server's checks and the URLs it hands out cannot drift apart.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use spaceport_core::Error;
use spaceport_core::ports::UploadTarget;

use crate::files::sync_dir;

type HmacSha256 = Hmac<Sha256>;

/// Characters kept as-is in a URL path segment or query value; everything else is %-encoded.
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a verified upload URL allows: one object of exactly this size and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub key: String,
    pub size: u64,
    pub content_type: String,
}

/// What a verified download URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    pub key: String,
    /// The name to offer in `Content-Disposition`, when the URL carries one.
    pub filename: Option<String>,
}

/// Reads the signing key at `path`, or creates one (32 random bytes, hex, mode 0600) if absent.
/// Two processes creating it at once end up with the same key.
pub fn load_or_create_signing_key(path: &Path) -> Result<Vec<u8>, Error> {
    let read = |p: &Path| -> Result<Vec<u8>, Error> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Error::storage(format!("reading {}", p.display()), e))?;
        let key = hex::decode(text.trim()).map_err(|e| Error::Storage {
            context: format!("{} is not a hex key", p.display()),
            retryable: false,
            source: Box::new(e),
        })?;
        if key.len() < 32 {
            return Err(Error::Internal(format!(
                "{} holds a key shorter than 32 bytes",
                p.display()
            )));
        }
        Ok(key)
    };
    if path.exists() {
        return read(path);
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent folder", path.display())))?;
    create_private_dir(dir)?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let tmp = dir.join(format!(".{}.tmp", ulid::Ulid::new()));
    let io = |e| Error::storage(format!("creating {}", path.display()), e);
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(hex::encode(bytes).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // A hard link publishes the complete file and fails if another process won the race.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir).map_err(io)?;
            Ok(bytes.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io(e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    crate::files::private_dir_all(dir)
}

fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|s| utf8_percent_encode(s, URL_SAFE).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn enc(v: &str) -> String {
    utf8_percent_encode(v, URL_SAFE).to_string()
}

/// Query parameters, %-decoded; the first of a repeated name wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn expiry(ttl: Duration) -> (i64, DateTime<Utc>) {
    let exp = Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4);
    (exp, DateTime::from_timestamp(exp, 0).unwrap_or_default())
}

/// Signs and verifies the store's URLs with one secret key (at least 32 bytes).
pub(super) struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// A signer over `key`; a key shorter than 32 bytes is refused.
    pub(super) fn new(key: Vec<u8>) -> Result<Signer, Error> {
        if key.len() < 32 {
            return Err(Error::Internal(
                "the blob signing key must be at least 32 bytes".into(),
            ));
        }
        Ok(Signer { key })
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Length-prefixed, so no two different field lists sign the same bytes.
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn upload_mac(&self, key: &str, size: u64, content_type: &str, exp: i64) -> HmacSha256 {
        self.mac(&[
            b"spaceport-upload-v1",
            b"PUT",
            key.as_bytes(),
            size.to_string().as_bytes(),
            content_type.as_bytes(),
            exp.to_string().as_bytes(),
        ])
    }

    fn download_mac(&self, key: &str, filename: Option<&str>, exp: i64) -> HmacSha256 {
        let (has, name) = match filename {
            Some(f) => (&b"1"[..], f.as_bytes()),
            None => (&b"0"[..], &b""[..]),
        };
        self.mac(&[
            b"spaceport-download-v1",
            b"GET",
            key.as_bytes(),
            has,
            name,
            exp.to_string().as_bytes(),
        ])
    }

    /// A PUT of exactly `size` bytes of `content_type` to `key`, under `base_url`, until `ttl`.
    /// The key and type must already be valid.
    pub(super) fn upload_target(
        &self,
        base_url: &str,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> UploadTarget {
        let (exp, expires_at) = expiry(ttl);
        let sig = hex::encode(
            self.upload_mac(key, size, content_type, exp)
                .finalize()
                .into_bytes(),
        );
        let url = format!(
            "{base_url}/v1/uploads/{}?size={size}&content_type={}&exp={exp}&sig={sig}",
            encode_key(key),
            enc(content_type),
        );
        UploadTarget {
            method: "PUT".into(),
            url,
            fields: Default::default(),
            headers: [("Content-Type".to_owned(), content_type.to_owned())].into(),
            expires_at,
        }
    }

    /// A GET of `key` (offered as `filename` when given), under `base_url`, until `ttl`.
    pub(super) fn download_url(
        &self,
        base_url: &str,
        key: &str,
        filename: Option<&str>,
        ttl: Duration,
    ) -> (String, DateTime<Utc>) {
        let (exp, expires_at) = expiry(ttl);
        let sig = hex::encode(
            self.download_mac(key, filename, exp)
                .finalize()
                .into_bytes(),
        );
        let name = filename
            .map(|f| format!("&filename={}", enc(f)))
            .unwrap_or_default();
        let url = format!(
            "{base_url}/v1/blobs/{}?exp={exp}{name}&sig={sig}",
            encode_key(key),
        );
        (url, expires_at)
    }

    /// See `DirBlobStore::verify_upload`.
    pub(super) fn verify_upload(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<UploadGrant, Error> {
        let q = Query::parse(query);
        let invalid = |m: &str| Error::UploadSignatureInvalid(m.to_owned());
        let (Some(size), Some(signed_ct), Some(exp), Some(sig)) = (
            q.get("size"),
            q.get("content_type"),
            q.get("exp"),
            q.get("sig"),
        ) else {
            return Err(invalid(
                "the upload URL lacks size, content_type, exp or sig",
            ));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| invalid("the upload URL's size is not a number"))?;
        let exp: i64 = exp
            .parse()
            .map_err(|_| invalid("the upload URL's exp is not a number"))?;
        let sig = hex::decode(sig).map_err(|_| invalid("the upload URL's sig is not hex"))?;
        self.upload_mac(key, size, signed_ct, exp)
            .verify_slice(&sig)
            .map_err(|_| {
                invalid("the upload signature does not match this key, size, type and expiry")
            })?;
        match content_type.map(str::trim) {
            Some(ct) if ct.eq_ignore_ascii_case(signed_ct) => {}
            other => {
                return Err(Error::UploadSignatureInvalid(format!(
                    "the upload was signed for Content-Type {signed_ct:?}, the request sent {other:?}"
                )));
            }
        }
        if now.timestamp() > exp {
            return Err(Error::UploadExpired(format!(
                "the upload URL expired at {}",
                DateTime::from_timestamp(exp, 0)
                    .unwrap_or_default()
                    .to_rfc3339()
            )));
        }
        Ok(UploadGrant {
            key: key.to_owned(),
            size,
            content_type: signed_ct.to_owned(),
        })
    }

    /// See `DirBlobStore::verify_download`.
    pub(super) fn verify_download(
        &self,
        key: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<DownloadGrant, Error> {
        let q = Query::parse(query);
        let invalid = |m: &str| Error::UploadSignatureInvalid(m.to_owned());
        let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) else {
            return Err(invalid("the download URL lacks exp or sig"));
        };
        let exp: i64 = exp
            .parse()
            .map_err(|_| invalid("the download URL's exp is not a number"))?;
        let sig = hex::decode(sig).map_err(|_| invalid("the download URL's sig is not hex"))?;
        let filename = q.get("filename");
        self.download_mac(key, filename, exp)
            .verify_slice(&sig)
            .map_err(|_| invalid("the download signature does not match this key and expiry"))?;
        if now.timestamp() > exp {
            return Err(Error::UploadExpired(format!(
                "the download URL expired at {}",
                DateTime::from_timestamp(exp, 0)
                    .unwrap_or_default()
                    .to_rfc3339()
            )));
        }
        Ok(DownloadGrant {
            key: key.to_owned(),
            filename: filename.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use spaceport_core::ports::BlobStore;

    use super::*;
    use crate::blob::testing::{KEY, split, store, tamper};

    #[tokio::test]
    async fn an_upload_url_verifies_for_exactly_what_it_was_signed_for() {
        let (_d, s) = store();
        let t = s
            .presign_upload(KEY, "image/jpeg", 5, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(t.method, "PUT");
        assert_eq!(t.headers["Content-Type"], "image/jpeg");
        let (path, query) = split(&t.url);
        assert_eq!(
            path,
            "http://127.0.0.1:9/v1/uploads/runs/run_01JD0000000000000000000000/inputs/images/0"
        );
        let now = Utc::now();
        let grant = s
            .verify_upload(KEY, &query, Some("image/jpeg"), now)
            .unwrap();
        assert_eq!(
            grant,
            UploadGrant {
                key: KEY.into(),
                size: 5,
                content_type: "image/jpeg".into()
            }
        );

        let invalid = |r: Result<UploadGrant, Error>| {
            assert!(matches!(r, Err(Error::UploadSignatureInvalid(_))), "{r:?}")
        };
        invalid(s.verify_upload(
            "runs/other/inputs/images/0",
            &query,
            Some("image/jpeg"),
            now,
        ));
        invalid(s.verify_upload(KEY, &tamper(&query, "size", "6"), Some("image/jpeg"), now));
        invalid(s.verify_upload(
            KEY,
            &tamper(&query, "content_type", "image%2Fpng"),
            Some("image/png"),
            now,
        ));
        invalid(s.verify_upload(KEY, &query, Some("image/png"), now));
        invalid(s.verify_upload(KEY, &query, None, now));
        let later = (now + chrono::Duration::hours(1)).timestamp().to_string();
        invalid(s.verify_upload(KEY, &tamper(&query, "exp", &later), Some("image/jpeg"), now));
        invalid(s.verify_upload(KEY, &tamper(&query, "sig", "00ff"), Some("image/jpeg"), now));
        invalid(s.verify_upload(KEY, "size=5", Some("image/jpeg"), now));

        // Another store's key signs different URLs.
        let (_d2, other) = store();
        invalid(other.verify_upload(KEY, &query, Some("image/jpeg"), now));
    }

    #[tokio::test]
    async fn a_valid_upload_url_past_its_expiry_is_expired() {
        let (_d, s) = store();
        let t = s
            .presign_upload(KEY, "image/jpeg", 5, Duration::from_secs(60))
            .await
            .unwrap();
        let (_, query) = split(&t.url);
        let after = t.expires_at + chrono::Duration::seconds(1);
        let err = s
            .verify_upload(KEY, &query, Some("image/jpeg"), after)
            .unwrap_err();
        assert!(matches!(err, Error::UploadExpired(_)), "{err:?}");
        assert!(
            s.verify_upload(KEY, &query, Some("image/jpeg"), t.expires_at)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn download_urls_bind_key_filename_and_expiry() {
        let (_d, s) = store();
        let (url, expires_at) = s
            .presign_download(KEY, Some("scene one.glb"), Duration::from_secs(60))
            .await
            .unwrap();
        let (path, query) = split(&url);
        assert!(path.ends_with("/v1/blobs/runs/run_01JD0000000000000000000000/inputs/images/0"));
        assert!(query.contains("filename=scene%20one.glb"), "{query}");
        let now = Utc::now();
        let g = s.verify_download(KEY, &query, now).unwrap();
        assert_eq!(g.filename.as_deref(), Some("scene one.glb"));
        for bad in [
            tamper(&query, "filename", "x.glb"),
            tamper(&query, "exp", "99999999999"),
            query.replace("&filename=scene%20one.glb", ""),
        ] {
            let err = s.verify_download(KEY, &bad, now).unwrap_err();
            assert!(
                matches!(err, Error::UploadSignatureInvalid(_)),
                "{bad}: {err:?}"
            );
        }
        assert!(s.verify_download("runs/x", &query, now).is_err());
        let err = s
            .verify_download(KEY, &query, expires_at + chrono::Duration::seconds(1))
            .unwrap_err();
        assert!(matches!(err, Error::UploadExpired(_)), "{err:?}");
    }
}
