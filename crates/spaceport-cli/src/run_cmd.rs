//! `spaceport run PIPELINE FILE…`: create a run, upload the files, follow it with a progress bar
//! (status, queue rank/ETA, progress) and download its artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::client::ApiClient;

/// What `run` was asked to do.
pub struct RunArgs {
    pub pipeline: String,
    pub files: Vec<String>,
    pub set: Vec<String>,
    pub out: Option<PathBuf>,
    pub json: bool,
    pub deadline_s: Option<u64>,
}

/// The content type a file's extension implies.
pub fn content_type_of(path: &Path) -> Result<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        _ => bail!(
            "cannot tell the content type of {} from its extension (use .jpg, .png or .webp)",
            path.display()
        ),
    })
}

/// Parses `--set k=v`: JSON values (numbers, booleans, quoted strings) or bare strings.
pub fn parse_settings(set: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected key=value"))?;
        if k.is_empty() {
            bail!("--set {kv:?}: the key is empty");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// Files by slot: `slot=path`, or a plain path for the pipeline's only slot.
fn files_by_slot(files: &[String], slots: &[String]) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let (slot, path) = match f.split_once('=') {
            Some((s, p)) if slots.iter().any(|x| x == s) => (s.to_string(), PathBuf::from(p)),
            _ if slots.len() == 1 => (slots[0].clone(), PathBuf::from(f)),
            _ => bail!(
                "{f:?}: this pipeline takes several inputs ({}); write slot=path",
                slots.join(", ")
            ),
        };
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        out.entry(slot).or_default().push(path);
    }
    Ok(out)
}

/// Runs the command; returns the final run.
pub async fn run(client: &ApiClient, args: RunArgs) -> Result<Value> {
    let pipeline = client.pipelines().await?;
    let spec = pipeline["pipelines"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == args.pipeline.as_str()))
        .cloned()
        .with_context(|| {
            format!(
                "unknown pipeline {:?} (see `spaceport pipelines`)",
                args.pipeline
            )
        })?;
    let slots: Vec<String> = spec["inputs"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let by_slot = files_by_slot(&args.files, &slots)?;
    let mut inputs = Map::new();
    for (slot, paths) in &by_slot {
        let mut list = vec![];
        for p in paths {
            let size = std::fs::metadata(p)
                .with_context(|| format!("reading {}", p.display()))?
                .len();
            let filename = p
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{}: unusable file name", p.display()))?;
            list.push(
                json!({"filename": filename, "content_type": content_type_of(p)?, "size": size}),
            );
        }
        inputs.insert(slot.clone(), Value::Array(list));
    }
    let mut body = json!({"pipeline": args.pipeline, "settings": parse_settings(&args.set)?, "inputs": inputs});
    if let Some(d) = args.deadline_s {
        body["deadline_s"] = json!(d);
    }
    let run = client.create_run(&body, None).await?;
    let id = run["id"].as_str().context("run without id")?.to_string();

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1000)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(id.clone());
    bar.enable_steady_tick(Duration::from_millis(120));

    let mut files = vec![];
    for up in run["uploads"].as_array().cloned().unwrap_or_default() {
        let slot = up["slot"].as_str().unwrap_or_default();
        let index = up["index"].as_u64().unwrap_or(0) as usize;
        let path = by_slot
            .get(slot)
            .and_then(|paths| paths.get(index))
            .with_context(|| {
                format!("the server asked for an upload this run has no file for: {slot}[{index}]")
            })?
            .clone();
        files.push((up, path));
    }
    bar.set_message(format!("uploading {} file(s)", files.len()));
    client.upload_all(&files).await?;

    let final_run = tokio::select! {
        r = follow(client, &id, &bar) => r?,
        _ = tokio::signal::ctrl_c() => {
            bar.set_message("cancelling…");
            let r = client.action(&id, "cancel").await;
            bar.finish_and_clear();
            r?;
            bail!("interrupted: run {id} cancelled");
        }
    };
    bar.finish_and_clear();

    let status = final_run["status"].as_str().unwrap_or("");
    if status != "succeeded" && !args.json {
        print_outputs(&final_run);
    }
    if status != "succeeded" {
        let e = &final_run["error"];
        if args.json {
            println!("{}", serde_json::to_string_pretty(&final_run)?);
        }
        bail!(
            "run {id} ended {status}: {} {}",
            e["code"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
    }
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("spaceport-out").join(&id));
    let mut saved = vec![];
    for a in final_run["artifacts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = a["name"].as_str().unwrap_or_default();
        let filename = a["filename"].as_str().unwrap_or(name);
        let path = client
            .download_artifact(&id, name, filename, &out_dir)
            .await?;
        saved.push((name.to_string(), path, a["size"].as_u64().unwrap_or(0)));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&final_run)?);
    } else {
        println!(
            "run {id} succeeded (attempt {})",
            final_run["backend"]["attempt"]
        );
        for (name, path, size) in saved {
            println!("  {name}: {} ({size} bytes)", path.display());
        }
        print_outputs(&final_run);
    }
    if final_run["outputs"]
        .as_object()
        .is_some_and(|o| !o.is_empty())
    {
        let path = out_dir.join("outputs.json");
        std::fs::create_dir_all(&out_dir)?;
        std::fs::write(&path, serde_json::to_vec_pretty(&final_run["outputs"])?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(final_run)
}

/// Prints a run's non-file outputs, one per line (long text cut to its first line).
fn print_outputs(run: &Value) {
    for (name, v) in run["outputs"].as_object().into_iter().flatten() {
        let shown = match v {
            Value::String(s) => {
                let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                if first.len() == s.len() {
                    s.clone()
                } else {
                    format!("{first} … ({} bytes)", s.len())
                }
            }
            other => other.to_string(),
        };
        println!("  {name} = {shown}");
    }
}

/// How long `follow` keeps trying to reach a server that went away (a restart) before giving up.
pub const RECONNECT_FOR: Duration = Duration::from_secs(120);

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "expired")
}

/// Follows a run to a terminal status through its event stream, drawing its progress. A stream
/// cut by a server restart is resumed after the last event seen (`Last-Event-ID`), so nothing is
/// missed or shown twice; a server gone for longer than `RECONNECT_FOR` is an error.
pub async fn follow(client: &ApiClient, id: &str, bar: &ProgressBar) -> Result<Value> {
    let mut after = 0;
    // A model server's answer streaming in: (request, batch, try) and its text so far, shown
    // whole once the next one starts or the run ends.
    let mut answer: Option<(String, String)> = None;
    let show = |answer: &mut Option<(String, String)>| {
        if let Some((label, text)) = answer.take() {
            bar.println(format!("  {label}: {}", text.trim()));
        }
    };
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        match client.events(id, after).await {
            Ok(events) => {
                down_since = None;
                futures::pin_mut!(events);
                while let Some(Ok(e)) = events.next().await {
                    after = e.seq;
                    let d = &e.data;
                    bar.set_message(describe(&json!({
                        "status": d["status"], "progress": d["progress"],
                        "backend": {"attempt": d["attempt"]},
                    })));
                    if let Some(f) = d["progress"]["fraction"].as_f64() {
                        bar.set_position((f.clamp(0.0, 1.0) * 1000.0) as u64);
                    }
                    // The Space's log lines, as they come (Replicate shows a prediction's logs).
                    for line in d["logs"].as_array().into_iter().flatten() {
                        bar.println(format!("  log: {}", line.as_str().unwrap_or_default()));
                    }
                    if let Some(t) = d["text"].as_object() {
                        let label = format!(
                            "{} {} (try {})",
                            t["request"].as_str().unwrap_or("?"),
                            t["batch"],
                            t["try"]
                        );
                        if answer.as_ref().is_none_or(|(l, _)| *l != label) {
                            show(&mut answer);
                        }
                        answer
                            .get_or_insert_with(|| (label, String::new()))
                            .1
                            .push_str(t["text"].as_str().unwrap_or_default());
                    }
                }
                show(&mut answer);
                // Ended by the server after the terminal event, or cut: the run says which.
                if let Ok(run) = client.get_run(id, None).await
                    && is_terminal(run["status"].as_str().unwrap_or(""))
                {
                    return Ok(run);
                }
            }
            Err(e) if e.downcast_ref::<crate::client::ApiFailure>().is_some() => return Err(e),
            Err(e) => {
                let since = *down_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(e.context(format!(
                        "the server did not answer for {RECONNECT_FOR:?}; run {id} goes on there"
                    )));
                }
                bar.set_message(format!("reconnecting to the server… ({e:#})"));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line about a run: status, queue position, ETA, stage and message.
pub fn describe(run: &Value) -> String {
    let p = &run["progress"];
    let mut parts = vec![run["status"].as_str().unwrap_or("?").to_string()];
    if let Some(stage) = p["stage"].as_str() {
        parts.push(stage.to_string());
    }
    if let Some(rank) = p["queue_rank"].as_u64() {
        match p["queue_size"].as_u64() {
            Some(size) => parts.push(format!("queue {}/{}", rank + 1, size)),
            None => parts.push(format!("queue #{}", rank + 1)),
        }
    }
    if let Some(eta) = p["eta_s"].as_f64() {
        parts.push(format!("eta {eta:.0}s"));
    }
    if let Some(f) = p["fraction"].as_f64() {
        parts.push(format!("{:.0}%", f * 100.0));
    }
    if let Some(m) = p["message"].as_str() {
        parts.push(m.to_string());
    }
    let attempt = run["backend"]["attempt"].as_u64().unwrap_or(0);
    if attempt > 1 {
        parts.push(format!("attempt {attempt}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_json_or_strings() {
        let s = parse_settings(&[
            "conf_thres=45".into(),
            "show_cam=false".into(),
            "prediction_mode=pointmap".into(),
        ])
        .unwrap();
        assert_eq!(s["conf_thres"], json!(45));
        assert_eq!(s["show_cam"], json!(false));
        assert_eq!(s["prediction_mode"], json!("pointmap"));
        assert!(parse_settings(&["novalue".into()]).is_err());
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type_of(Path::new("a.JPG")).unwrap(), "image/jpeg");
        assert_eq!(content_type_of(Path::new("a.webp")).unwrap(), "image/webp");
        assert!(content_type_of(Path::new("a.txt")).is_err());
    }

    #[test]
    fn describe_shows_queue_and_eta() {
        let run = json!({"status": "running", "progress": {"stage": "queued_at_space", "queue_rank": 2, "queue_size": 5, "eta_s": 12.4}, "backend": {"attempt": 2}});
        assert_eq!(
            describe(&run),
            "running · queued_at_space · queue 3/5 · eta 12s · attempt 2"
        );
    }
}
