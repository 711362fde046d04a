//! Our signatures against the Standard Webhooks reference library (the `standardwebhooks` wheel
//! in the test venv): every message verifies with the secret it was signed with, and during a
//! rotation with either the old or the new secret alone; a changed body or id does not.

use std::process::Command;

use serde_json::{Value, json};
use spaceport_testkit::venv_python;
use spaceport_webhooks::{SigningSecret, sign};

/// Verifies each case with the reference library; returns its verdicts.
fn verify(cases: &[Value]) -> Vec<bool> {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
out = []
for c in json.load(sys.stdin):
    headers = {"webhook-id": c["id"], "webhook-timestamp": str(c["ts"]), "webhook-signature": c["sig"]}
    try:
        Webhook(c["secret"]).verify(c["body"], headers)
        out.append(True)
    except Exception:
        out.append(False)
print(json.dumps(out))
"#;
    let mut child = Command::new(venv_python().unwrap())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &cases).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn signatures_verify_with_the_reference_library_including_during_rotation() {
    let old = SigningSecret::from_key((0..32).collect());
    let new = SigningSecret::from_key((100..132).collect());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = r#"{"type":"run.succeeded","data":{"id":"run_01J","status":"succeeded","é":"ü"}}"#;
    let rotated = sign(&[new.clone(), old.clone()], "msg_1", now, body.as_bytes());
    let case = |secret: &SigningSecret, id: &str, body: &str, sig: &str| json!({"secret": secret.to_whsec(), "id": id, "ts": now, "body": body, "sig": sig});
    let single = sign(std::slice::from_ref(&old), "msg_2", now, body.as_bytes());
    let verdicts = verify(&[
        case(&old, "msg_2", body, &single),
        case(&new, "msg_1", body, &rotated),
        case(&old, "msg_1", body, &rotated),
        // Tampering is refused: another body, another id, another secret.
        case(&old, "msg_2", &body.replace("succeeded", "failed"), &single),
        case(&old, "msg_3", body, &single),
        case(&new, "msg_2", body, &single),
    ]);
    assert_eq!(verdicts, [true, true, true, false, false, false]);
}
