//! The input fetcher port: the bytes of a URL input, fetched under the outbound rules (public
//! addresses only, unless allow-listed, at every redirect), bounded in time.

use async_trait::async_trait;

use crate::error::Error;

use super::ByteStream;

/// A URL input's answer, before its body is read.
pub struct Fetched {
    pub body: ByteStream,
    /// The media type the server gave (parameters dropped), if any.
    pub content_type: Option<String>,
    /// The length the server announced, if any (the body is still counted as it streams).
    pub length: Option<u64>,
    /// The URL the bytes came from, after redirects.
    pub final_url: String,
}

/// Fetches URL inputs.
#[async_trait]
pub trait InputFetcher: Send + Sync {
    /// Starts fetching `url`; a refused address, a redirect to one, too many redirects, an
    /// error status or no answer in time is an error on `field` (a 422: the input is unusable).
    async fn fetch(&self, field: &str, url: &str) -> Result<Fetched, Error>;
}
