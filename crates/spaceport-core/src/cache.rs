//! The result cache's key: what makes two runs the same job. A run whose key equals a succeeded
//! run's is answered with that run's results, without a call to the backend. The key covers
//! everything the backend is given and what it runs: the tenant (results never cross tenants),
//! the pipeline and the one whose backend serves it, the backend's revision (the Space's commit,
//! or a digest of its `/config`), the resolved settings and each input's slot, position, file
//! name and sha256.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::run::{InputState, Run};

/// Bumped when what the key covers changes, so old entries stop matching.
const KEY_VERSION: u32 = 1;

/// The run's result-cache key on a backend at `revision`; `None` while an input has not landed.
pub fn result_key(run: &Run, revision: &str) -> Option<String> {
    let mut inputs = BTreeMap::new();
    for (slot, files) in &run.inputs {
        let mut list = vec![];
        for f in files {
            if f.state != InputState::Landed {
                return None;
            }
            list.push(json!([f.filename, f.sha256.as_ref()?]));
        }
        inputs.insert(slot.clone(), list);
    }
    let settings: BTreeMap<&String, &Value> = run.settings.iter().collect();
    let doc = json!({
        "v": KEY_VERSION,
        "tenant": run.tenant,
        "pipeline": run.pipeline,
        "backend": run.backend_pipeline(),
        "revision": revision,
        "settings": settings,
        "inputs": inputs,
    });
    Some(hex::encode(Sha256::digest(doc.to_string().as_bytes())))
}

/// Where the blob store keeps the entry for `key` (the id of the run that made the results).
pub fn entry_key(key: &str) -> String {
    format!("cache/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;
    use crate::ids::RunId;
    use crate::run::{BackendInfo, InputFile};

    fn run(sha: &str, name: &str, conf: f64) -> Run {
        let now = chrono::Utc::now();
        let mut r = Run::new(
            RunId::new(1, 7),
            "vggt",
            BackendInfo::new(BackendKind::Space, "facebook/vggt"),
            now,
            now,
        );
        r.settings.insert("conf_thres".into(), json!(conf));
        r.inputs.insert(
            "images".into(),
            vec![InputFile {
                filename: name.into(),
                content_type: "image/png".into(),
                size: 3,
                sha256: Some(sha.into()),
                state: InputState::Landed,
                key: "k".into(),
                url: None,
                from_run: None,
            }],
        );
        r
    }

    #[test]
    fn the_key_changes_with_anything_the_backend_is_given() {
        let base = result_key(&run("aa", "a.png", 50.0), "rev1").unwrap();
        assert_eq!(base, result_key(&run("aa", "a.png", 50.0), "rev1").unwrap());
        assert_ne!(base, result_key(&run("bb", "a.png", 50.0), "rev1").unwrap());
        assert_ne!(base, result_key(&run("aa", "b.png", 50.0), "rev1").unwrap());
        assert_ne!(base, result_key(&run("aa", "a.png", 51.0), "rev1").unwrap());
        assert_ne!(base, result_key(&run("aa", "a.png", 50.0), "rev2").unwrap());
        let mut other = run("aa", "a.png", 50.0);
        other.tenant = "acme".into();
        assert_ne!(base, result_key(&other, "rev1").unwrap());
        let mut pending = run("aa", "a.png", 50.0);
        pending.inputs.get_mut("images").unwrap()[0].state = InputState::Pending;
        assert_eq!(result_key(&pending, "rev1"), None);
    }
}
