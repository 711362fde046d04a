//! One mapping from AWS SDK failures to the domain's `Error`: what we were doing, the service's
//! error code and message, and whether trying again can help (throttling, timeouts, 5xx).

use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// An AWS call that failed, with the service's code when it answered.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.code.as_deref(), .message.as_deref()))]
pub struct AwsFailure {
    /// The service's error code (`ConditionalCheckFailedException`, `NoSuchKey` …).
    pub code: Option<String>,
    /// The service's message, or the transport's.
    pub message: Option<String>,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn describe(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "the request failed".to_owned(),
    }
}

/// Codes that mean "the service is busy or briefly inconsistent": try again later.
const RETRYABLE_CODES: [&str; 9] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "InternalServerError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestThrottled",
];

type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>;

/// The service's error code of an SDK failure, if the service answered one.
pub(crate) fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

/// Maps an SDK failure to `Error::Storage`, retryable for transport failures, throttling and 5xx.
pub(crate) fn sdk<E>(context: impl Into<String>, err: SdkError<E>) -> spaceport_core::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError as E2;
    let (code, message, retryable) = match &err {
        E2::ServiceError(se) => {
            let e = se.err();
            let code = e.code().map(str::to_owned);
            let status = se.raw().status().as_u16();
            let retryable = status >= 500
                || status == 429
                || code
                    .as_deref()
                    .is_some_and(|c| RETRYABLE_CODES.contains(&c));
            (code, e.message().map(str::to_owned), retryable)
        }
        E2::TimeoutError(_) | E2::DispatchFailure(_) | E2::ResponseError(_) => {
            (None, Some(DisplayErrorContext(&err).to_string()), true)
        }
        _ => (None, Some(DisplayErrorContext(&err).to_string()), false),
    };
    spaceport_core::Error::Storage {
        context: context.into(),
        retryable,
        source: Box::new(AwsFailure {
            code,
            message,
            source: Box::new(err),
        }),
    }
}
