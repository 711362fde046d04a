//! Spaceport on AWS: the run store on DynamoDB, the step queues on SQS, the blob store on S3, and
//! the Lambda glue the functions share. The same contract suites as the embedded adapters run
//! against these (on moto here).

pub mod bus;
mod deliveries;
pub mod dynamo;
pub mod error;
pub mod events;
pub mod lambda;
pub mod s3;
pub mod secrets;
mod slots;
pub mod sqs;
pub mod stack;
mod sweeps;

pub use bus::EventBridgeSink;
pub use dynamo::DynamoRunStore;
pub use lambda::{batch_response, handle_sqs_batch, init_tracing, serve_step};
pub use s3::S3BlobStore;
pub use sqs::{QueueUrls, SqsQueue};
pub use stack::{AwsConfig, AwsStack, emulator_sdk_config, https_client, load_sdk_config};
