//! The contract, held by a schema-driven fuzzer: schemathesis (pinned in tests/requirements.txt)
//! reads `/v1/openapi.json` from a real `spaceport serve` with an API key and runs every check
//! (no server error; every status, content type, header and body as documented; schema-valid
//! requests accepted and schema-violating ones refused; a missing key refused) through its
//! coverage, fuzzing and stateful phases, bounded in time. The exceptions, each a rule JSON
//! Schema cannot state, are in tests/schemathesis.toml with their reasons.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spaceport_core::auth::{hash_text, key_hash};

/// Seconds the fuzzer may spend; it repeats fuzzing and stateful scenarios until then.
const FUZZ_SECONDS: u64 = 45;

#[test]
fn a_schema_driven_fuzzer_finds_no_failure_against_spaceport_serve() {
    let root = spaceport_testkit::repo_root();
    let st = spaceport_testkit::venv_python()
        .unwrap()
        .with_file_name("schemathesis");
    assert!(
        st.is_file(),
        "{} is missing: run scripts/test-env.sh",
        st.display()
    );
    let key = format!("sk_{:064x}", rand::random::<u128>());
    let keys = serde_json::json!([{"name": "fuzz", "tenant": "fuzz", "scopes": ["admin"],
        "hash": hash_text(&key_hash(&key))}]);
    let off = serde_json::json!({"per_second": 0, "burst": 0});
    let rates = serde_json::json!({"runs:read": off, "runs:write": off, "admin": off});
    let data = tempfile::tempdir().unwrap();
    let port = spaceport_testkit::free_port();
    let dead_space = format!("http://127.0.0.1:{}", spaceport_testkit::free_port());
    let mut serve = Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args(["--data", data.path().to_str().unwrap(), "serve", "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .env("SPACEPORT_API_KEYS", keys.to_string())
        .env("SPACEPORT_RATE_LIMITS", rates.to_string())
        .env(
            "SPACEPORT_WEBHOOK_SECRETS",
            "whsec_dGhlLW5ldy1zZWNyZXQtb2YtMjAyNiEh",
        )
        .env("SPACEPORT_SPACE_URL_VGGT", &dead_space)
        .env("SPACEPORT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        assert!(Instant::now() < until, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let run = Command::new(&st)
        .current_dir(data.path())
        .args(["--config-file"])
        .arg(root.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--max-time", &FUZZ_SECONDS.to_string()])
        // One worker: CPython 3.11's parser is not safe across hypothesis's threads.
        .args(["--workers", "1", "--no-color"])
        .output()
        .unwrap();
    serve.kill().unwrap();
    let served = serve.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    let log = String::from_utf8_lossy(&served.stderr);
    assert!(
        !log.contains("panicked"),
        "the server panicked under the fuzzer:\n{log}"
    );
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // It really ran: every operation of the document, through fuzzing.
    let counts: Vec<u32> = report
        .lines()
        .find(|l| l.contains(" selected / "))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] >= 17,
        "{report}"
    );
    assert!(report.contains("Fuzzing"), "{report}");
}
