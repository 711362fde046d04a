//! Least privilege, read from the template: each function's secrets, table actions, key
//! prefixes and queues, held to what the code uses.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use spaceport_stack::config::{SECRET_SETTINGS, env_var, secret_arn_var};
use spaceport_testkit::repo_root;

use super::{target, template};

/// `v` itself, or the first branch of an `Fn::If` (the resource or policy when the condition
/// holds; the other branch is `AWS::NoValue` here).
fn when_set(v: &Value) -> &Value {
    match v["Fn::If"].as_array() {
        Some(branches) => &branches[1],
        None => v,
    }
}

/// Least privilege for secrets: no secret's value is in any function's environment (each is a
/// Secrets Manager secret made from its NoEcho parameter); a function may read exactly the
/// secrets its `_ARN` variables name (through the GetSecretValue policy on each, nothing wider);
/// and each secret goes only to the functions that use it.
#[test]
fn each_function_reads_only_its_own_secrets() {
    let t = template();
    let resources = t["Resources"].as_object().unwrap();
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    let mut readers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, r) in resources {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let env = &r["Properties"]["Environment"]["Variables"];
        let mut named = BTreeSet::new();
        for setting in SECRET_SETTINGS {
            for vars in [env, globals] {
                assert!(
                    vars.get(env_var(setting)).is_none(),
                    "{name}'s environment holds {} itself",
                    env_var(setting)
                );
            }
            assert!(globals.get(secret_arn_var(setting)).is_none());
            if let Some(v) = env.get(secret_arn_var(setting)) {
                let secret = target(when_set(v)).unwrap_or_else(|| panic!("{name}: {v}"));
                named.insert(secret.to_owned());
            }
        }
        let mut granted = BTreeSet::new();
        for policy in r["Properties"]["Policies"].as_array().into_iter().flatten() {
            let policy = when_set(policy);
            assert!(
                !policy.to_string().contains("secretsmanager:"),
                "{name} has a hand-written Secrets Manager statement: {policy}"
            );
            if let Some(p) = policy.get("AWSSecretsManagerGetSecretValuePolicy") {
                granted.insert(target(&p["SecretArn"]).unwrap().to_owned());
            }
        }
        assert_eq!(
            named, granted,
            "{name}: the secrets it is given and may read"
        );
        for s in named {
            readers.entry(s).or_default().insert(name.clone());
        }
    }
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let want = BTreeMap::from([
        ("ApiKeysSecret".to_owned(), set(&["AcceptUploadFunction"])),
        (
            "RunTokenSecretSecret".to_owned(),
            set(&["AcceptUploadFunction"]),
        ),
        (
            "HfTokenSecret".to_owned(),
            set(&[
                "AcceptUploadFunction",
                "FetchArtifactFunction",
                "PollStatusFunction",
                "SubmitSpaceFunction",
            ]),
        ),
        (
            "WebhookSecretsSecret".to_owned(),
            set(&["NotifyWebhookFunction"]),
        ),
    ]);
    assert_eq!(readers, want);
    // Each secret is made from its parameter, which CloudFormation never shows.
    for (secret, parameter) in [
        ("ApiKeysSecret", "ApiKeys"),
        ("RunTokenSecretSecret", "RunTokenSecret"),
        ("HfTokenSecret", "HfToken"),
        ("WebhookSecretsSecret", "WebhookSecrets"),
    ] {
        let r = &resources[secret];
        assert_eq!(r["Type"], "AWS::SecretsManager::Secret");
        assert_eq!(target(&r["Properties"]["SecretString"]), Some(parameter));
        assert_eq!(t["Parameters"][parameter]["NoEcho"], true, "{parameter}");
    }
}

/// The operations the AWS adapters' source calls on a service's SDK client (`.get_item()` …),
/// from the files given: what the functions' policies must allow and need not exceed.
fn sdk_calls(files: &[&str], ops: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for f in files {
        let text =
            std::fs::read_to_string(repo_root().join("crates/spaceport-aws/src").join(f)).unwrap();
        for op in ops {
            if text.contains(&format!(".{op}()")) {
                found.insert(op.to_string());
            }
        }
    }
    found
}

/// A function's policy statements, SAM policy templates and managed policies resolved to
/// `(actions, resources)` as far as the template says them.
fn statements(t: &Value, policies: &Value) -> Vec<(BTreeSet<String>, Vec<Value>)> {
    let mut out = Vec::new();
    let mut add = |doc: &Value| {
        for st in doc["Statement"].as_array().into_iter().flatten() {
            assert_eq!(st["Effect"], "Allow", "{st}");
            let actions = match &st["Action"] {
                Value::String(a) => BTreeSet::from([a.clone()]),
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                other => panic!("{other}"),
            };
            let resources = match &st["Resource"] {
                Value::Array(r) => r.clone(),
                r => vec![r.clone()],
            };
            out.push((actions, resources));
        }
    };
    for p in policies.as_array().into_iter().flatten() {
        let p = when_set(p);
        if let Some(managed) = target(p) {
            add(&t["Resources"][managed]["Properties"]["PolicyDocument"]);
        } else if p.get("Statement").is_some() {
            add(p);
        }
    }
    out
}

/// A function's bucket rights by key prefix, and the queues it may send to.
type Rights<'a> = (Vec<(&'a str, Vec<&'a str>)>, Vec<&'a str>);

/// Least privilege for the table, the bucket and the queues. Every function's table rights are
/// one managed policy whose actions are exactly what the DynamoDB adapter calls (puts inside
/// transactions count as PutItem; there are no deletes, scans or batch writes), on the table and
/// its indexes. Its bucket rights are object actions under `runs/` or `cache/` only (ListBucket on
/// the bucket, for 404s), each an action the S3 adapter needs, per function as the steps use
/// them. It may send only to the queues its step hands runs on to. No SAM CRUD template, no
/// wildcard action.
#[test]
fn each_function_may_touch_only_what_it_uses() {
    let t = template();
    let resources = t["Resources"].as_object().unwrap();

    let dynamo = sdk_calls(
        &[
            "dynamo.rs",
            "events.rs",
            "deliveries.rs",
            "slots.rs",
            "sweeps.rs",
        ],
        &[
            "get_item",
            "put_item",
            "update_item",
            "delete_item",
            "query",
            "scan",
            "transact_write_items",
            "batch_write_item",
            "batch_get_item",
        ],
    );
    let source = ["dynamo.rs", "events.rs", "deliveries.rs"]
        .map(|f| {
            std::fs::read_to_string(repo_root().join("crates/spaceport-aws/src").join(f)).unwrap()
        })
        .concat();
    for builder in [
        "Update::builder",
        "Delete::builder",
        "ConditionCheck::builder",
    ] {
        assert!(
            !source.contains(builder),
            "a transaction now uses {builder}: grant it"
        );
    }
    let table_actions: BTreeSet<String> = dynamo
        .iter()
        .map(|op| match op.as_str() {
            "get_item" => "dynamodb:GetItem",
            "put_item" | "transact_write_items" => "dynamodb:PutItem",
            "update_item" => "dynamodb:UpdateItem",
            "query" => "dynamodb:Query",
            other => panic!("the adapter calls {other}: decide whether to grant it"),
        })
        .map(str::to_owned)
        .collect();
    let access = &resources["RunsTableAccess"]["Properties"]["PolicyDocument"]["Statement"];
    let granted: BTreeSet<String> = access[0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        granted, table_actions,
        "the table policy and the adapter's calls"
    );
    assert_eq!(access.as_array().unwrap().len(), 1);

    let s3_ops = sdk_calls(
        &["s3.rs"],
        &[
            "put_object",
            "get_object",
            "head_object",
            "delete_object",
            "copy_object",
            "create_multipart_upload",
            "upload_part",
            "complete_multipart_upload",
            "abort_multipart_upload",
            "list_objects_v2",
        ],
    );
    assert!(
        !s3_ops.contains("list_objects_v2"),
        "the S3 adapter lists keys now"
    );
    let s3_needed: BTreeSet<&str> = s3_ops
        .iter()
        .map(|op| match op.as_str() {
            "get_object" | "head_object" => "s3:GetObject",
            "put_object"
            | "create_multipart_upload"
            | "upload_part"
            | "complete_multipart_upload" => "s3:PutObject",
            "copy_object" => "s3:PutObject",
            "delete_object" => "s3:DeleteObject",
            "abort_multipart_upload" => "s3:AbortMultipartUpload",
            other => panic!("{other}"),
        })
        .collect();

    let rw = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"];
    let spec: BTreeMap<&str, Rights> = BTreeMap::from([
        (
            "AcceptUploadFunction",
            (
                vec![("runs/", [&rw[..], &["s3:DeleteObject"]].concat())],
                vec![
                    "SubmitQueue",
                    "PollQueue",
                    "FetchQueue",
                    "ReconstructQueue",
                    "CallModelQueue",
                    "WebhookQueue",
                ],
            ),
        ),
        (
            "SubmitSpaceFunction",
            (
                vec![
                    ("runs/", rw.to_vec()),
                    ("cache/", vec!["s3:DeleteObject", "s3:GetObject"]),
                ],
                vec![
                    "PollQueue",
                    "ReconstructQueue",
                    "CallModelQueue",
                    "SubmitQueue",
                    "WebhookQueue",
                ],
            ),
        ),
        (
            "PollStatusFunction",
            (
                vec![("runs/", rw.to_vec())],
                vec!["FetchQueue", "SubmitQueue", "PollQueue", "WebhookQueue"],
            ),
        ),
        (
            "FetchArtifactFunction",
            (
                vec![
                    ("runs/", rw.to_vec()),
                    ("cache/", vec!["s3:AbortMultipartUpload", "s3:PutObject"]),
                ],
                vec!["FetchQueue", "WebhookQueue"],
            ),
        ),
        (
            "CallModelFunction",
            (
                vec![("runs/", rw.to_vec())],
                vec!["CallModelQueue", "WebhookQueue"],
            ),
        ),
        ("NotifyWebhookFunction", (vec![], vec!["WebhookQueue"])),
        (
            "ReconstructFunction",
            (
                vec![("runs/", rw.to_vec())],
                vec!["ReconstructQueue", "WebhookQueue"],
            ),
        ),
    ]);
    let mut s3_granted_anywhere = BTreeSet::new();
    for (name, r) in resources {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let (want_s3, want_queues) = spec
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in this test's table: add it"));
        let policies = &r["Properties"]["Policies"];
        let text = policies.to_string();
        for wide in ["CrudPolicy", "FullAccess", "ReadPolicy\"", "\"*\"", ":*\""] {
            assert!(
                !text.contains(wide),
                "{name} has a wide grant ({wide}): {text}"
            );
        }
        // The table: the managed policy, and nothing else about DynamoDB.
        let refs: Vec<&str> = policies
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| target(when_set(p)))
            .collect();
        assert!(refs.contains(&"RunsTableAccess"), "{name}");
        // The bucket, by prefix.
        let mut s3: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (actions, res) in statements(&t, policies) {
            if !actions.iter().any(|a| a.starts_with("s3:")) {
                assert!(
                    actions.iter().all(|a| a.starts_with("dynamodb:")),
                    "{name}: {actions:?}"
                );
                continue;
            }
            let arn = res[0]["Fn::Sub"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {res:?}"));
            let bucket = "arn:${AWS::Partition}:s3:::${AWS::StackName}-blobs-${AWS::AccountId}";
            if arn == bucket {
                assert_eq!(
                    actions,
                    BTreeSet::from(["s3:ListBucket".to_owned()]),
                    "{name}"
                );
                continue;
            }
            let prefix = arn
                .strip_prefix(&format!("{bucket}/"))
                .and_then(|p| p.strip_suffix('*'))
                .unwrap_or_else(|| panic!("{name}: {arn} is not a key prefix"));
            for a in &actions {
                assert!(
                    s3_needed.contains(a.as_str()),
                    "{name} grants {a}, which no call needs"
                );
                s3_granted_anywhere.insert(a.clone());
            }
            s3.entry(prefix.to_owned()).or_default().extend(actions);
        }
        let want: BTreeMap<String, BTreeSet<String>> = want_s3
            .iter()
            .map(|(p, a)| (p.to_string(), a.iter().map(|x| x.to_string()).collect()))
            .collect();
        assert_eq!(s3, want, "{name}'s bucket rights");
        // The queues it may send to.
        let sends: BTreeSet<String> = policies
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.get("SQSSendMessagePolicy"))
            .map(|p| target(&p["QueueName"]).unwrap().to_owned())
            .collect();
        let want: BTreeSet<String> = want_queues.iter().map(|q| q.to_string()).collect();
        assert_eq!(sends, want, "{name}'s queues");
    }
    let needed: BTreeSet<String> = s3_needed.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        s3_granted_anywhere, needed,
        "every S3 action the adapter needs is granted somewhere"
    );
}
