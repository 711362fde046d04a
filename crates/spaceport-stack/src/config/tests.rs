use super::*;
use spaceport_core::pipeline::BackendSpec;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_overrides_file_and_names_pipelines() {
    let cfg = Config::from_sources(
        Some((
            "spaceport.toml",
            "bind = \"127.0.0.1:9000\"\nlease_s = 5\n[pipelines.vggt]\nspace_url = \"http://a\"\n",
        )),
        vars(&[
            ("SPACEPORT_BIND", "127.0.0.1:9001"),
            ("SPACEPORT_SPACE_URL_VGGT", "http://127.0.0.1:7860"),
            ("SPACEPORT_MODEL_VGGT_ONNX", "/models/v.onnx"),
            ("SPACEPORT_LEASE_S", "7"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.bind.as_deref(), Some("127.0.0.1:9001"));
    assert_eq!(cfg.lease_s, Some(7));
    let set = cfg.pipelines().unwrap();
    let BackendSpec::Space { url, .. } = &set.get("vggt").unwrap().backend else {
        panic!()
    };
    assert_eq!(url.as_deref(), Some("http://127.0.0.1:7860"));
    let BackendSpec::Onnx { model, .. } = &set.get("vggt-onnx").unwrap().backend else {
        panic!()
    };
    assert_eq!(model, "/models/v.onnx");
}

#[test]
fn unknown_settings_are_errors_naming_them() {
    let e = Config::from_sources(Some(("f.toml", "bnd = 1")), vars(&[])).unwrap_err();
    assert!(
        e.to_string().contains("f.toml") && e.to_string().contains("bnd"),
        "{e}"
    );
    let e = Config::from_sources(None, vars(&[("SPACEPORT_BINDD", "x")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_BINDD"), "{e}");
    // A pipeline override for a pipeline that does not exist fails when pipelines load.
    let cfg =
        Config::from_sources(None, vars(&[("SPACEPORT_SPACE_URL_NOPE", "http://x")])).unwrap();
    let e = cfg.pipelines().unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_SPACE_URL_NOPE"), "{e}");
    // Not settings: the CLI's log filter, the config file variable, other programs' variables.
    Config::from_sources(
        None,
        vars(&[
            ("SPACEPORT_LOG", "debug"),
            ("RUST_LOG", "info"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
}

#[test]
fn bad_values_name_their_variable() {
    let e = Config::from_sources(None, vars(&[("SPACEPORT_LEASE_S", "abc")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_LEASE_S"), "{e}");
    let e = Config::from_sources(None, vars(&[("SPACEPORT_LEASE_S", "0")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_LEASE_S"), "{e}");
    let e = Config::from_sources(None, vars(&[("SPACEPORT_MODEL_PROVIDER", "gpu")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_MODEL_PROVIDER"), "{e}");
    let cfg =
        Config::from_sources(None, vars(&[("SPACEPORT_MODEL_PROVIDER", "tensorrt")])).unwrap();
    assert_eq!(cfg.model_provider, ModelProvider::TensorRt);
}

#[test]
fn the_space_client_options_carry_the_token_hosts_and_hub() {
    let cfg = Config::from_sources(
        None,
        vars(&[
            ("SPACEPORT_HF_TOKEN", "hf_secret_value"),
            (
                "SPACEPORT_SPACE_TOKEN_HOSTS",
                "spaces.example.com,*.hf.space",
            ),
            ("SPACEPORT_HUB_URL", "https://hub.example.com"),
        ]),
    )
    .unwrap();
    let options = cfg.space_client_options();
    assert!(options.token.is_some());
    assert_eq!(options.token_hosts, ["spaces.example.com", "*.hf.space"]);
    assert_eq!(options.hub_url.as_deref(), Some("https://hub.example.com"));
    // Unset, the client's own default allow-list holds.
    let plain = Config::from_sources(None, vars(&[])).unwrap();
    assert_eq!(
        plain.space_client_options().token_hosts,
        spaceport_gradio::ClientOptions::default().token_hosts
    );
    assert!(plain.space_client_options().token.is_none());
}

#[test]
fn tokens_stay_strings_and_never_show() {
    let cfg = Config::from_sources(
        None,
        vars(&[
            ("HF_TOKEN", "12345"),
            ("SPACEPORT_HF_TOKEN", "hf_secret_value"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.hf_token.as_ref().unwrap().expose(), "hf_secret_value");
    let shown = format!("{cfg:?} {}", serde_json::to_string(&cfg).unwrap());
    assert!(!shown.contains("hf_secret_value"), "{shown}");
    let cfg = Config::from_sources(None, vars(&[("HF_TOKEN", "12345")])).unwrap();
    assert_eq!(
        cfg.hf_token.unwrap().expose(),
        "12345",
        "a numeric token stays text"
    );
}

#[test]
fn lists_come_comma_separated_and_endpoints_as_json() {
    let cfg = Config::from_sources(
        None,
        vars(&[
            ("SPACEPORT_OUTBOUND_ALLOW", "127.0.0.1, 10.0.0.0/8,hooks.internal"),
            ("SPACEPORT_WEBHOOK_SECRETS", "whsec_bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3,whsec_b2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xk"),
            ("SPACEPORT_WEBHOOK_SCHEDULE_S", "0,1,2"),
            ("SPACEPORT_WEBHOOKS", r#"[{"name": "billing", "url": "https://b.example/h", "events": ["run.succeeded"]}]"#),
        ]),
    )
    .unwrap();
    assert_eq!(
        cfg.outbound_allow,
        ["127.0.0.1", "10.0.0.0/8", "hooks.internal"]
    );
    assert_eq!(cfg.webhook_secrets.len(), 2);
    assert_eq!(cfg.webhook_schedule_s, Some(vec![0, 1, 2]));
    assert_eq!(cfg.webhooks[0].name, "billing");
    assert!(
        cfg.outbound_guard()
            .unwrap()
            .check_url("u", "http://10.1.1.1/")
            .is_ok()
    );
    let shown = format!("{cfg:?} {}", serde_json::to_string(&cfg).unwrap());
    assert!(!shown.contains("bmV3"), "{shown}");
    let e = Config::from_sources(None, vars(&[("SPACEPORT_OUTBOUND_ALLOW", "10.0.0.0/99")]))
        .unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_OUTBOUND_ALLOW"), "{e}");
    let e = Config::from_sources(None, vars(&[("SPACEPORT_WEBHOOKS", "[{")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_WEBHOOKS"), "{e}");
}

/// On AWS the API holds no signing secret (notify-webhook does): told so, it accepts runs with a
/// webhook and endpoints without secrets of their own; not told, such a configuration is refused
/// at load.
#[test]
fn webhooks_may_be_signed_by_another_process() {
    let endpoint = r#"[{"name": "billing", "url": "https://b.example/h"}]"#;
    let cfg = Config::from_sources(
        None,
        vars(&[
            ("SPACEPORT_WEBHOOK_SIGNING_ELSEWHERE", "true"),
            ("SPACEPORT_WEBHOOKS", endpoint),
        ]),
    )
    .unwrap();
    let settings = cfg.webhook_settings(WebhookSettings::default()).unwrap();
    assert!(settings.can_sign);
    assert_eq!(settings.endpoints.len(), 1);
    let e = Config::from_sources(None, vars(&[("SPACEPORT_WEBHOOKS", endpoint)])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_WEBHOOK_SECRETS"), "{e}");
    let cfg = Config::from_sources(None, vec![]).unwrap();
    assert!(
        !cfg.webhook_settings(WebhookSettings::default())
            .unwrap()
            .can_sign
    );
}

/// A secret's `_ARN` variable is read only by the AWS functions; elsewhere it is refused by
/// name, never silently ignored.
#[test]
fn a_secret_arn_variable_is_refused_where_nothing_reads_it() {
    for setting in SECRET_SETTINGS {
        let var = secret_arn_var(setting);
        let e = Config::from_sources(None, vars(&[(var.as_str(), "arn:aws:secretsmanager:x")]))
            .unwrap_err();
        assert!(e.to_string().contains(&var), "{e}");
    }
}

#[test]
fn aws_storage_names_what_is_missing() {
    let e = Config::from_sources(None, vars(&[("SPACEPORT_STORAGE", "aws")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_RUNS_TABLE"), "{e}");
    let e = Config::from_sources(
        None,
        vars(&[("SPACEPORT_STORAGE", "aws"), ("SPACEPORT_RUNS_TABLE", "t")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_BLOBS_BUCKET"), "{e}");
    let cfg = Config::from_sources(
        None,
        vars(&[
            ("SPACEPORT_STORAGE", "aws"),
            ("SPACEPORT_RUNS_TABLE", "t"),
            ("SPACEPORT_BLOBS_BUCKET", "b"),
            ("SPACEPORT_SUBMIT_SPACE_QUEUE_URL", "http://q/submit"),
            ("SPACEPORT_SUBMIT_SPACE_DLQ_URL", "http://q/submit-dlq"),
        ]),
    )
    .unwrap();
    let e = cfg
        .clone()
        .require_queue(QueueName::PollStatus)
        .unwrap_err();
    assert!(
        e.to_string().contains("SPACEPORT_POLL_STATUS_QUEUE_URL"),
        "{e}"
    );
    assert_eq!(
        cfg.queue_urls(QueueName::SubmitSpace),
        Some(("http://q/submit".into(), Some("http://q/submit-dlq".into())))
    );
    assert!(cfg.require_queue(QueueName::SubmitSpace).is_ok());
    let e =
        Config::from_sources(None, vars(&[("SPACEPORT_NOPE_QUEUE_URL", "http://q")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_NOPE_QUEUE_URL"), "{e}");
    let file = "[queues.reconstruct]\nurl = \"http://q/r\"\n";
    let cfg = Config::from_sources(Some(("f.toml", file)), vars(&[])).unwrap();
    assert_eq!(
        cfg.queue_urls(QueueName::Reconstruct),
        Some(("http://q/r".into(), None))
    );
    let bad = "[queues.nope]\nurl = \"x\"\n";
    let e = Config::from_sources(Some(("f.toml", bad)), vars(&[])).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = Config::from_sources(None, vars(&[("SPACEPORT_RUNS_TABLE", "t")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_STORAGE"), "{e}");
}

#[test]
fn variable_names_are_mechanical() {
    assert_eq!(env_var("runs_table"), "SPACEPORT_RUNS_TABLE");
    assert_eq!(
        space_url_var("kolors-tryon"),
        "SPACEPORT_SPACE_URL_KOLORS_TRYON"
    );
    assert_eq!(model_var("vggt-onnx"), "SPACEPORT_MODEL_VGGT_ONNX");
    assert_eq!(
        server_url_var("vlm-describe"),
        "SPACEPORT_SERVER_URL_VLM_DESCRIBE"
    );
    assert_eq!(
        queue_vars(QueueName::SubmitSpace),
        (
            "SPACEPORT_SUBMIT_SPACE_QUEUE_URL".to_string(),
            "SPACEPORT_SUBMIT_SPACE_DLQ_URL".to_string()
        )
    );
}

#[test]
fn the_readme_lists_every_setting_once_with_its_variable() {
    let readme = include_str!("../../../../README.md");
    let keys = Config::keys();
    for key in keys.iter().filter(|k| *k != "pipelines" && *k != "queues") {
        let row = format!("| `{key}` | `{}`", env_var(key));
        assert_eq!(readme.matches(&row).count(), 1, "README.md: one row {row}");
    }
    for row in [
        "| `[pipelines.NAME] space_url` | `SPACEPORT_SPACE_URL_<NAME>`",
        "| `[pipelines.NAME] model` | `SPACEPORT_MODEL_<NAME>`",
        "| `[pipelines.NAME] server_url` | `SPACEPORT_SERVER_URL_<NAME>`",
        "| `[queues.STEP] url` | `SPACEPORT_<STEP>_QUEUE_URL`",
        "| `[queues.STEP] dlq_url` | `SPACEPORT_<STEP>_DLQ_URL`",
    ] {
        assert_eq!(readme.matches(row).count(), 1, "README.md: one row {row}");
    }
    for q in QueueName::ALL {
        assert!(
            readme.contains(&format!("`{}`", q.as_str())),
            "README.md names step {q:?}"
        );
    }
    // No row names a setting that does not exist.
    let table = readme
        .split("| key (`spaceport.toml`) | variable |")
        .nth(1)
        .expect("README.md has the configuration reference table");
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let key = line.split('`').nth(1).unwrap_or_default();
        assert!(
            keys.iter().any(|k| k == key)
                || key.starts_with("[pipelines.NAME]")
                || key.starts_with("[queues.STEP]"),
            "README.md lists {key:?}, which is no setting"
        );
    }
}

#[test]
fn limits_come_from_the_file_or_json_and_are_checked() {
    let file = r#"
        max_body_bytes = 4096
        tenant_max_runs_in_flight = 5
        [rate_limits."runs:write"]
        per_second = 2.5
        burst = 10
    "#;
    let cfg = Config::from_sources(Some(("f.toml", file)), vars(&[])).unwrap();
    assert_eq!(cfg.gate().unwrap().body_bytes, 4096);
    assert_eq!(
        cfg.steps_config(Default::default()).caps.runs_in_flight,
        Some(5)
    );
    let cfg = Config::from_sources(
        None,
        vars(&[(
            "SPACEPORT_RATE_LIMITS",
            r#"{"runs:read": {"per_second": 0, "burst": 0}}"#,
        )]),
    )
    .unwrap();
    assert_eq!(cfg.rate_limits["runs:read"].per_second, 0.0);
    let e = Config::from_sources(
        None,
        vars(&[(
            "SPACEPORT_RATE_LIMITS",
            r#"{"runs:all": {"per_second": 1, "burst": 1}}"#,
        )]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("SPACEPORT_RATE_LIMITS") && e.to_string().contains("runs:all"),
        "{e}"
    );
    let e = Config::from_sources(None, vars(&[("SPACEPORT_MAX_BODY_BYTES", "10")])).unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_MAX_BODY_BYTES"), "{e}");
    assert_eq!(
        cfg.gate().unwrap().upload_idle,
        spaceport_server::UPLOAD_IDLE
    );
    let cfg = Config::from_sources(None, vars(&[("SPACEPORT_UPLOAD_IDLE_S", "5")])).unwrap();
    assert_eq!(cfg.gate().unwrap().upload_idle, Duration::from_secs(5));
    let e = Config::from_sources(None, vars(&[("SPACEPORT_UPLOAD_IDLE_S", "0")]))
        .and_then(|c| c.gate().map(drop))
        .unwrap_err();
    assert!(e.to_string().contains("SPACEPORT_UPLOAD_IDLE_S"), "{e}");
}
