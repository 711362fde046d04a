//! The step queues on SQS: one queue per step, each with a dead-letter queue bound by its redrive
//! policy (SQS moves a message there itself after `maxReceiveCount` receives). Delays and
//! visibility are whole seconds on SQS, so durations are rounded up.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use spaceport_core::Error;
use spaceport_core::ports::{Delivery, Queue, QueueName, QueueStats};

use crate::error::sdk;

/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// Where one step's queue lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub url: String,
    /// Its dead-letter queue, read for `stats().dead`.
    pub dlq_url: Option<String>,
}

/// The step queues on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queues: BTreeMap<QueueName, QueueUrls>,
    wait: Duration,
}

fn secs_up(d: Duration, max: Duration) -> i32 {
    let d = d.min(max);
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)) as i32
}

impl SqsQueue {
    /// The queues in `queues`; a step whose queue is not there fails when it is used.
    pub fn new(client: Client, queues: BTreeMap<QueueName, QueueUrls>) -> Self {
        SqsQueue {
            client,
            queues,
            wait: Duration::ZERO,
        }
    }

    /// Long-polls `receive` for up to `wait` (at most 20 s) when nothing is visible, as a
    /// long-running worker should; the default, zero, answers at once.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// Creates a queue and its dead-letter queue (redrive after `max_receives`) named
    /// `{prefix}-{step}` and `{prefix}-{step}-dlq`, for tests and emulators; the deployment
    /// creates them from the template.
    pub async fn create(
        client: &Client,
        prefix: &str,
        queue: QueueName,
        max_receives: u32,
    ) -> Result<QueueUrls, Error> {
        let name = format!("{prefix}-{}", queue.as_str());
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .map_err(|e| sdk(format!("creating queue {name}-dlq"), e))?;
        let dlq_url = dlq.queue_url.unwrap_or_default();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk(format!("reading queue {name}-dlq"), e))?;
        let dlq_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| Error::Internal(format!("queue {name}-dlq has no ARN")))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives,
        });
        let out = client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|e| sdk(format!("creating queue {name}"), e))?;
        Ok(QueueUrls {
            url: out.queue_url.unwrap_or_default(),
            dlq_url: Some(dlq_url),
        })
    }

    fn urls(&self, queue: QueueName) -> Result<&QueueUrls, Error> {
        self.queues.get(&queue).ok_or_else(|| {
            Error::Internal(format!(
                "no URL is configured for the {} queue",
                queue.as_str()
            ))
        })
    }

    async fn count(&self, url: &str, names: &[QueueAttributeName]) -> Result<u64, Error> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sdk("reading queue attributes", e))?;
        let attrs = out.attributes();
        Ok(names
            .iter()
            .filter_map(|n| attrs.and_then(|a| a.get(n)))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, body: &str, delay: Duration) -> Result<String, Error> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.urls(queue)?.url)
            .message_body(body)
            .delay_seconds(secs_up(delay, MAX_DELAY))
            .send()
            .await
            .map_err(|e| sdk(format!("sending to the {} queue", queue.as_str()), e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.urls(queue)?.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(secs_up(visibility, MAX_VISIBILITY))
            .wait_time_seconds(self.wait.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk(format!("receiving from the {} queue", queue.as_str()), e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Delivery {
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), Error> {
        self.client
            .delete_message()
            .queue_url(&self.urls(queue)?.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk(format!("deleting from the {} queue", queue.as_str()), e))?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), Error> {
        self.client
            .change_message_visibility()
            .queue_url(&self.urls(queue)?.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs_up(visibility, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|e| {
                sdk(
                    format!("changing visibility on the {} queue", queue.as_str()),
                    e,
                )
            })?;
        Ok(())
    }

    /// SQS reports the oldest message's age only as a CloudWatch metric, so `oldest_age_s` is
    /// `None` here.
    async fn stats(&self, queue: QueueName) -> Result<QueueStats, Error> {
        let urls = self.urls(queue)?;
        let depth = self
            .count(
                &urls.url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let in_flight = self
            .count(
                &urls.url,
                &[QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
            )
            .await?;
        let dead = match &urls.dlq_url {
            Some(dlq) => {
                self.count(
                    dlq,
                    &[
                        QueueAttributeName::ApproximateNumberOfMessages,
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    ],
                )
                .await?
            }
            None => 0,
        };
        Ok(QueueStats {
            depth,
            in_flight,
            dead,
            oldest_age_s: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds_within_sqs_limits() {
        assert_eq!(secs_up(Duration::ZERO, MAX_DELAY), 0);
        assert_eq!(secs_up(Duration::from_millis(1), MAX_DELAY), 1);
        assert_eq!(secs_up(Duration::from_millis(1500), MAX_DELAY), 2);
        assert_eq!(secs_up(Duration::from_secs(3), MAX_DELAY), 3);
        assert_eq!(secs_up(Duration::from_secs(4000), MAX_DELAY), 900);
        assert_eq!(secs_up(Duration::from_secs(86_400), MAX_VISIBILITY), 43_200);
    }
}
