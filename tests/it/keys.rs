//! API keys through the embedded stack: `spaceport keys new` prints a key and its entry; with
//! keys configured a request without a key, with an unknown or a revoked one is 401, a key
//! without the route's scope 403, and the open routes (health, OpenAPI, signed upload URLs)
//! stay open; `serve` refuses a non-loopback address without keys.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spaceport_cli::client::ApiClient;
use spaceport_cli::config::{ApiKeyConfig, Config};

use crate::common::*;

/// Runs `spaceport keys new`; the key and its JSON entry.
fn new_key(name: &str, scopes: &str) -> (String, ApiKeyConfig) {
    let out = Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args([
            "keys", "new", "--name", name, "--tenant", "acme", "--scopes", scopes,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("sk_").map(|k| format!("sk_{k}")))
        .expect("the key");
    assert_eq!(key.len(), 3 + 64, "{key}");
    let json_line = text.lines().last().unwrap().trim();
    let entry: ApiKeyConfig = serde_json::from_str(json_line).unwrap();
    // The TOML form says the same.
    let toml_part =
        &text[text.find("[[api_keys]]").expect("the TOML entry")..text.find("or to").unwrap()];
    let parsed: toml::Value = toml::from_str(toml_part).unwrap();
    assert_eq!(
        parsed["api_keys"][0]["hash"].as_str(),
        Some(entry.hash.as_str())
    );
    // Only the hash is configured: it is not the key.
    assert!(!entry.hash.contains(&key[3..]));
    (key, entry)
}

#[test]
fn keys_new_refuses_an_unknown_scope() {
    let out = Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args([
            "keys", "new", "--name", "x", "--tenant", "acme", "--scopes", "runs:all",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runs:all"), "{err}");
}

#[tokio::test]
async fn keys_and_scopes_guard_every_route_but_the_open_ones() {
    let (reader, reader_entry) = new_key("reader", "runs:read");
    let (writer, writer_entry) = new_key("writer", "runs:read,runs:write");
    let (admin, admin_entry) = new_key("admin", "admin");
    let (revoked, mut revoked_entry) = new_key("old", "admin");
    revoked_entry.revoked = true;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        api_keys: vec![reader_entry, writer_entry, admin_entry, revoked_entry],
        ..config(dir.path(), "http://127.0.0.1:9")
    };
    let t = TestStack::start_config(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", t.stack.url);
    let get = |p: &str, key: Option<&str>| {
        let mut r = http.get(url(p));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        send(r)
    };

    // No key, an unknown one, a revoked one: 401, naming no key.
    let no_key = http.get(url("/v1/runs")).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(
        no_key.headers()["www-authenticate"],
        "Bearer realm=\"spaceport\""
    );
    for key in [None, Some("sk_nope"), Some(revoked.as_str())] {
        let got = get("/v1/runs", key).await;
        let e = expect_error(&got, 401, "unauthorized");
        if let Some(k) = key {
            assert!(!got.1.to_string().contains(k), "{e}");
        }
    }
    // The open routes.
    for p in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(get(p, None).await.0, 200, "{p}");
    }

    // Scopes.
    assert_eq!(get("/v1/runs", Some(&reader)).await.0, 200);
    assert_eq!(get("/v1/pipelines", Some(&reader)).await.0, 200);
    let refused = json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 70}]}});
    let got = send(
        http.post(url("/v1/runs"))
            .bearer_auth(&reader)
            .json(&refused),
    )
    .await;
    let e = expect_error(&got, 403, "forbidden");
    assert!(e["message"].as_str().unwrap().contains("runs:write"), "{e}");
    assert_eq!(get("/v1/runs", Some(&reader)).await.1["runs"], json!([]));
    let got = get("/v1/deliveries", Some(&writer)).await;
    expect_error(&got, 403, "forbidden");
    assert_eq!(get("/v1/deliveries", Some(&admin)).await.0, 200);

    // The client with the writer's key creates a run; its upload URL needs no key.
    let client = ApiClient::new(&t.stack.url).with_key(Some(writer.clone()));
    let files = tempfile::tempdir().unwrap();
    let paths = write_files(files.path(), &[("a.png", png(6, 5, 1))]);
    let size = std::fs::metadata(&paths[0]).unwrap().len();
    let body = json!({"pipeline": "vggt",
        "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": size}]}});
    let run: Value = client.create_run(&body, None).await.unwrap();
    ApiClient::new(&t.stack.url)
        .upload(&run["uploads"][0], &paths[0])
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap();
    let seen = client.get_run(id, None).await.unwrap();
    assert_eq!(seen["inputs"]["images"][0]["state"], "landed", "{seen}");
    let keyless = ApiClient::new(&t.stack.url)
        .get_run(id, None)
        .await
        .unwrap_err();
    let failure = keyless
        .downcast::<spaceport_cli::client::ApiFailure>()
        .unwrap();
    assert_eq!(failure.status, 401);
}

/// Starts `spaceport serve` on `bind` with `args` and `env`; whether it is still running after
/// it answered or exited, and what it printed.
fn serve(bind: &str, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args([
            "--data",
            data.path().to_str().unwrap(),
            "serve",
            "--bind",
            bind,
            "--steps",
            "none",
        ])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let port = bind.rsplit(':').next().unwrap();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (false, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            return (true, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        assert!(Instant::now() < until, "serve neither started nor exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    let any = |p: u16| format!("0.0.0.0:{p}");
    let (running, err) = serve(&any(spaceport_testkit::free_port()), &[], &[]);
    assert!(!running, "served without keys");
    assert!(
        err.contains("without API keys") && err.contains("--insecure-no-auth"),
        "{err}"
    );

    let (running, err) = serve(
        &any(spaceport_testkit::free_port()),
        &["--insecure-no-auth"],
        &[],
    );
    assert!(running, "{err}");
    assert!(err.contains("WARNING"), "{err}");

    let (_, entry) = new_key("ops", "admin");
    let keys = serde_json::to_string(&vec![entry]).unwrap();
    let (running, err) = serve(
        &any(spaceport_testkit::free_port()),
        &[],
        &[("SPACEPORT_API_KEYS", keys)],
    );
    assert!(running, "{err}");
}
