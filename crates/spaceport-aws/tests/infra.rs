//! `infra/template.yaml` against cfn-lint (with the SAM translator) and against the code: the
//! variables the code reads, the table the code creates (checked on moto), the function binaries
//! that exist, partial batch responses on every queue consumer, alarms, timeouts, the GPU worker,
//! and (`privileges`) each function's rights held to what it uses.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use spaceport_aws::DynamoRunStore;
use spaceport_core::ports::QueueName;
use spaceport_stack::config::{Config, SECRET_SETTINGS, env_var, queue_vars, secret_arn_var};
use spaceport_testkit::{MotoServer, repo_root, venv_python};

fn template_path() -> std::path::PathBuf {
    repo_root().join("infra/template.yaml")
}

/// The template as JSON, read by cfn-lint's own decoder (it knows `!Ref` and the other tags).
fn template() -> Value {
    let out = Command::new(venv_python().unwrap())
        .args([
            "-c",
            "import json,sys; from cfnlint.decode import cfn_yaml; \
             print(json.dumps(cfn_yaml.load(sys.argv[1]), default=str))",
        ])
        .arg(template_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_template_passes_cfn_lint() {
    let lint = venv_python().unwrap().with_file_name("cfn-lint");
    let out = Command::new(lint).arg(template_path()).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_variable_the_code_reads_is_set_for_every_function() {
    let t = template();
    let vars = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .unwrap();
    let mut wanted = vec![
        env_var("storage"),
        env_var("runs_table"),
        env_var("blobs_bucket"),
    ];
    for q in QueueName::ALL {
        let (url, dlq) = queue_vars(q);
        wanted.push(url);
        wanted.push(dlq);
    }
    for v in wanted {
        assert!(vars.contains_key(&v), "Globals set no {v}");
    }
    // And every variable the template sets anywhere is one the configuration reads.
    let mut set: Vec<(String, String)> = vars.keys().map(|k| (k.clone(), "x".to_owned())).collect();
    for r in t["Resources"].as_object().unwrap().values() {
        if let Some(v) = r["Properties"]["Environment"]["Variables"].as_object() {
            set.extend(v.keys().map(|k| (k.clone(), "1".to_owned())));
        }
    }
    for (var, value) in set.into_iter().filter(|(v, _)| v != "RUST_LOG") {
        assert!(
            var.starts_with("SPACEPORT_"),
            "the template sets {var}, which no binary reads"
        );
        // A secret's ARN variable is read by the AWS resolution before the configuration.
        if SECRET_SETTINGS.iter().any(|s| secret_arn_var(s) == var) {
            continue;
        }
        // Read alone, each is a setting (an unknown one is an error naming it); values aside.
        if let Err(e) = Config::from_sources(None, [(var.clone(), value)]) {
            assert!(
                !e.to_string().contains("unknown environment variable"),
                "the template sets {var}: {e}"
            );
        }
    }
}

#[test]
fn every_function_builds_a_binary_of_this_workspace_and_reports_batch_failures() {
    let t = template();
    let mut binaries = BTreeSet::new();
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        if let Some(zip) = r["Properties"]["CodeUri"].as_str() {
            // `make lambda-zips` writes target/lambda/<binary>/bootstrap.zip.
            let bin = zip
                .strip_prefix("../target/lambda/")
                .and_then(|z| z.strip_suffix("/bootstrap.zip"))
                .unwrap_or_else(|| panic!("{name}'s CodeUri {zip} is not a cargo-lambda zip"));
            assert!(
                repo_root()
                    .join("functions")
                    .join(bin)
                    .join("Cargo.toml")
                    .is_file(),
                "{name} builds {bin}, which is not a package under functions/"
            );
            binaries.insert(bin.to_owned());
        }
        for (event, e) in r["Properties"]["Events"].as_object().unwrap() {
            if e["Type"] == "SQS" {
                assert_eq!(
                    e["Properties"]["FunctionResponseTypes"],
                    serde_json::json!(["ReportBatchItemFailures"]),
                    "{name}.{event}"
                );
            }
        }
    }
    for f in [
        "accept-upload",
        "submit-space",
        "poll-status",
        "fetch-artifact",
        "notify-webhook",
        "call-model",
    ] {
        assert!(binaries.contains(f), "no function builds {f}");
    }
}

#[tokio::test]
async fn the_templates_table_is_the_table_the_code_creates() {
    let moto = MotoServer::start().unwrap();
    let sdk = spaceport_aws::emulator_sdk_config(moto.url(), "testing").await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoRunStore::new(client.clone(), "runs-infra-check");
    store.create_table().await.unwrap();
    let table = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let created: BTreeSet<String> = table
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            let keys: Vec<String> = i
                .key_schema()
                .iter()
                .map(|k| format!("{}:{}", k.attribute_name(), k.key_type().as_str()))
                .collect();
            let projection = i
                .projection()
                .and_then(|p| p.projection_type())
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            format!(
                "{} {} {projection}",
                i.index_name().unwrap(),
                keys.join(",")
            )
        })
        .collect();
    let t = template();
    let props = &t["Resources"]["RunsTable"]["Properties"];
    let declared: BTreeSet<String> = props["GlobalSecondaryIndexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let keys: Vec<String> = i["KeySchema"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        k["AttributeName"].as_str().unwrap(),
                        k["KeyType"].as_str().unwrap()
                    )
                })
                .collect();
            format!(
                "{} {} {}",
                i["IndexName"].as_str().unwrap(),
                keys.join(","),
                i["Projection"]["ProjectionType"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        declared, created,
        "the template's indexes and create_table's"
    );
    assert_eq!(
        props["KeySchema"],
        serde_json::json!([{"AttributeName": "pk", "KeyType": "HASH"}])
    );
    assert_eq!(
        props["TimeToLiveSpecification"]["AttributeName"],
        "expires_at"
    );
}

/// The logical id a `!Ref X` or `!GetAtt X.Attr` names.
fn target(v: &serde_json::Value) -> Option<&str> {
    v["Ref"]
        .as_str()
        .or_else(|| v["Fn::GetAtt"][0].as_str())
        .or_else(|| v["Fn::GetAtt"].as_str().and_then(|s| s.split('.').next()))
}

#[test]
fn every_queue_alarms_on_its_dead_letters_and_its_oldest_message_to_the_topic() {
    let t = template();
    let resources = t["Resources"].as_object().unwrap();
    let alarms: Vec<&serde_json::Value> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .collect();
    let alarmed = |queue: &str, metric: &str| {
        alarms.iter().any(|a| {
            let p = &a["Properties"];
            p["MetricName"] == metric
                && p["Namespace"] == "AWS/SQS"
                && p["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["Name"] == "QueueName" && target(&d["Value"]) == Some(queue))
                && p["AlarmActions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| target(x) == Some("AlarmTopic"))
        })
    };
    let mut queues = 0;
    for (name, r) in resources {
        if r["Type"] != "AWS::SQS::Queue" || r["Properties"]["RedrivePolicy"].is_null() {
            continue;
        }
        queues += 1;
        let dlq = target(&r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]).unwrap();
        assert!(
            alarmed(dlq, "ApproximateNumberOfMessagesVisible"),
            "no alarm on {dlq} (the dead letters of {name})"
        );
        assert!(
            alarmed(name, "ApproximateAgeOfOldestMessage"),
            "no alarm on the age of {name}'s oldest message"
        );
    }
    assert!(queues >= 7, "{queues} step queues");
    assert_eq!(resources["AlarmTopic"]["Type"], "AWS::SNS::Topic");
    assert_eq!(
        target(&t["Outputs"]["AlarmTopicArn"]["Value"]),
        Some("AlarmTopic")
    );
}

#[test]
fn the_bucket_refuses_plain_http() {
    let t = template();
    let policy = t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| {
            r["Type"] == "AWS::S3::BucketPolicy"
                && target(&r["Properties"]["Bucket"]) == Some("BlobsBucket")
        })
        .expect("a policy on BlobsBucket");
    let denies_http = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| {
            s["Effect"] == "Deny"
                && s["Action"] == "s3:*"
                && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        });
    assert!(denies_http, "{policy}");
}

#[test]
fn each_queue_stays_hidden_six_times_its_consumers_timeout_and_poll_status_stops_in_time() {
    let t = template();
    let resources = t["Resources"].as_object().unwrap();
    let default_timeout = t["Globals"]["Function"]["Timeout"].as_u64().unwrap_or(3);
    let mut consumers = 0;
    for (name, r) in resources {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let timeout = r["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(default_timeout);
        for e in r["Properties"]["Events"].as_object().unwrap().values() {
            if e["Type"] != "SQS" {
                continue;
            }
            consumers += 1;
            let queue = target(&e["Properties"]["Queue"]).unwrap();
            let visibility = resources[queue]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap_or(30);
            assert!(
                visibility >= 6 * timeout,
                "{queue}: visibility {visibility} s is under 6 x {name}'s timeout {timeout} s"
            );
        }
        // A step that holds a stream or a model server (poll-status, call-model) stops in time
        // to hand the run on before Lambda kills it.
        let window = r["Properties"]["Environment"]["Variables"]["SPACEPORT_POLL_WINDOW_S"]
            .as_str()
            .and_then(|w| w.parse::<u64>().ok());
        if let Some(w) = window {
            assert!(
                w + 30 <= timeout,
                "{name}: window {w} s, timeout {timeout} s"
            );
        }
    }
    assert!(consumers >= 7, "{consumers} queue consumers");
}

/// The GPU worker (with `GpuWorkerImageUri`): an ECS service on GPU instances whose task is the
/// reconstruct worker with what it reads (every variable a setting, CUDA, the reconstruct queue),
/// one GPU per task; it idles at zero tasks and is scaled by the reconstruct queue's backlog (out
/// while jobs wait, to zero after 15 empty minutes), its instances following through the capacity
/// provider; its role has the reconstruct function's rights and no more; and with it deployed the
/// CPU Lambda stops taking the queue.
#[test]
fn the_gpu_worker_runs_the_reconstruct_queue_and_scales_to_zero() {
    let t = template();
    let r = t["Resources"].as_object().unwrap();
    for (name, res) in r.iter().filter(|(n, _)| n.starts_with("Gpu")) {
        assert_eq!(res["Condition"], "HasGpuWorker", "{name}");
    }
    let container = &r["GpuTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert_eq!(
        container["ResourceRequirements"],
        serde_json::json!([{"Type": "GPU", "Value": "1"}])
    );
    let env: Vec<(String, String)> = container["Environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e["Value"]
                .as_str()
                .map_or("placeholder".to_owned(), str::to_owned);
            (e["Name"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let value = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(value("SPACEPORT_MODEL_PROVIDER"), Some("cuda"));
    assert_eq!(value("SPACEPORT_STORAGE"), Some("aws"));
    let cfg = Config::from_sources(None, env.iter().filter(|(k, _)| k != "RUST_LOG").cloned())
        .expect("the worker's variables are settings")
        .require_queue(QueueName::Reconstruct)
        .expect("the worker has its queue");
    assert!(cfg.runs_table.is_some() && cfg.blobs_bucket.is_some());

    assert_eq!(r["GpuService"]["Properties"]["DesiredCount"], 0);
    let target_props = &r["GpuScalableTarget"]["Properties"];
    assert_eq!(target_props["MinCapacity"], 0);
    assert_eq!(
        target(&target_props["MaxCapacity"]),
        Some("GpuMaxInstances")
    );
    let alarm_on_queue = |alarm: &str| {
        let a = &r[alarm]["Properties"];
        a.to_string().contains("ReconstructQueue")
    };
    assert!(alarm_on_queue("GpuBacklogAlarm") && alarm_on_queue("GpuIdleAlarm"));
    assert_eq!(
        target(&r["GpuBacklogAlarm"]["Properties"]["AlarmActions"][0]),
        Some("GpuScaleOut")
    );
    assert_eq!(
        target(&r["GpuIdleAlarm"]["Properties"]["AlarmActions"][0]),
        Some("GpuScaleToZero")
    );
    assert_eq!(
        r["GpuScaleToZero"]["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"][0]["ScalingAdjustment"],
        0
    );
    assert_eq!(
        r["GpuAutoScalingGroup"]["Properties"]["MinSize"], "0",
        "no instance while idle"
    );

    // The task's rights: the table policy, objects under runs/, its queue (and its dead-letter
    // queue) and the webhook queue to send to.
    let role = &r["GpuTaskRole"]["Properties"];
    assert_eq!(
        role["ManagedPolicyArns"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(target)
            .collect::<Vec<_>>(),
        ["RunsTableAccess"]
    );
    let text = role["Policies"].to_string();
    assert!(!text.contains("\"*\"") && !text.contains(":*\""), "{text}");
    for st in role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
    {
        let res = st["Resource"].to_string();
        let allowed = [
            "/runs/*",
            "ReconstructQueue",
            "ReconstructDeadLetterQueue",
            "WebhookQueue",
        ]
        .iter()
        .any(|x| res.contains(x))
            || st["Action"] == "s3:ListBucket";
        assert!(allowed, "the GPU task may touch {res}");
        if res.contains("WebhookQueue") {
            assert_eq!(st["Action"], "sqs:SendMessage");
        }
    }
    // With the worker, the Lambda's event source is off.
    let event = &r["ReconstructFunction"]["Properties"]["Events"]["Queue"]["Properties"];
    assert_eq!(
        event["Enabled"],
        serde_json::json!({"Fn::If": ["HasGpuWorker", false, true]})
    );
}

#[path = "infra/privileges.rs"]
mod privileges;
