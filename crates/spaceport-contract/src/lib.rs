//! Contract suites for the ports: the same checks run against every adapter (SQLite and a
//! directory here, DynamoDB/SQS/S3 on AWS), so a step behaves the same on either. Each check is a
//! public async function that panics with `[contract <check>] …`; the suite functions run them all.
//! One module per port: `store` (runs, with `sweeps` for the queries the sweeper reads),
//! `queue` (step queues), `blobs` (objects and their presigned URLs).

mod blobs;
mod deliveries;
mod events;
mod queue;
mod store;
mod sweeps;

pub use blobs::{
    BlobContractOptions, DOWNLOAD_FILENAME, PresignExpectations, Refusal,
    blob_absent_key_has_no_head_is_not_found_and_deletes_fine,
    blob_copy_holds_the_same_object_and_outlives_its_source, blob_large_object_streams_back_whole,
    blob_overwrite_replaces_the_object_and_its_sha256, blob_put_get_head_delete_round_trip,
    blob_store_contract, blob_store_contract_with,
    presigned_download_serves_the_object_and_refuses_tampering,
    presigned_upload_accepts_only_its_declared_terms, presigned_upload_is_refused_once_expired,
    presigned_url_contract,
};
pub use deliveries::{
    cursors_keep_their_value, deliveries_are_created_once_and_updated_conditionally,
    delivery_store_contract, sample_delivery, the_sweeper_and_the_lists_see_the_right_deliveries,
};
pub use events::{
    events_are_written_with_their_change_and_only_with_it, run_events_contract,
    the_feed_lists_every_event_once_in_order,
};
pub use queue::{
    QueueContractOptions, queue_change_visibility_extends_and_releases, queue_contract,
    queue_contract_with, queue_dead_letters_after_max_receives,
    queue_delayed_message_waits_for_its_delay, queue_send_receive_delete,
    queue_stats_count_waiting_in_flight_and_age,
    queue_visibility_expiry_redelivers_with_a_higher_count,
    queue_waiting_names_a_runs_unreceived_message,
};
pub use store::{
    run_store_contract, sample_run, store_insert_then_get_round_trips,
    store_list_is_newest_first_filtered_and_paginates_without_gaps,
    store_same_idempotency_key_and_body_returns_the_first_run,
    store_same_idempotency_key_other_body_conflicts_and_writes_nothing,
    store_update_is_conditional_on_the_version, unique_pipeline,
};
pub use sweeps::{
    store_overdue_lists_live_runs_past_their_deadline,
    store_retained_pages_through_finished_runs_that_hold_data,
    store_stalled_pages_through_runs_nothing_moved,
};
