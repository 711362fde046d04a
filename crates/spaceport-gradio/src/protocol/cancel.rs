//! Stopping a job on servers that have no `/cancel` (Gradio 3.x `ws`, and `sse_v1`/`sse_v2`):
//! call the app's own Stop dependency, the one whose `cancels` lists the job's fn_index, through
//! `{prefix}/run/predict` in the job's session, as the browser does (gradio-protocol-legacy.md
//! §7, §8). An app without such a dependency cannot stop a job from outside.

use serde_json::{Value, json};
use spaceport_core::{Error, ErrorCode};

use crate::client::{Cookies, GradioClient};
use crate::handle::JobHandle;

/// Runs the dependency that cancels `handle`'s fn_index.
pub(crate) async fn by_dependency(client: &GradioClient, handle: &JobHandle) -> Result<(), Error> {
    let cookies = Cookies::parse(handle.cookies());
    let config = client.config(&cookies).await?;
    let Some(stop) = config.canceller_of(handle.fn_index()) else {
        return Err(Error::upstream(
            ErrorCode::SpaceProtocol,
            false,
            format!(
                "the Space ({} protocol) has no /cancel and no dependency that cancels fn_index {}, \
                 so its job cannot be stopped from outside",
                handle.protocol(),
                handle.fn_index()
            ),
        ));
    };
    let body = json!({
        "data": vec![Value::Null; stop.inputs.len()],
        "fn_index": stop.fn_index,
        "session_hash": handle.session_hash(),
        "event_data": null,
    });
    let req = client
        .http()
        .post(client.url(handle.api_prefix(), "run/predict")?)
        .timeout(client.options().request_timeout)
        .json(&body);
    client
        .send(
            "cancelling the Space's job (its Stop dependency)",
            req,
            &cookies,
        )
        .await?;
    Ok(())
}
