//! One SQS batch of the `submit-space` queue, handled by the submit_space step; the answer lists only the
//! messages that must come back (`ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use spaceport_core::ports::QueueName;
use spaceport_steps::Steps;

/// Handles one batch; it never fails as a whole.
pub async fn handle(
    steps: &Steps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, std::convert::Infallible> {
    Ok(spaceport_aws::handle_sqs_batch(steps, QueueName::SubmitSpace, event.payload).await)
}
