//! `spaceport run PIPELINE --batch DIR`: one run per entry of DIR, created as one batch, their
//! files uploaded, and each run's results written as it ends (not in the order they were
//! sent): its artifacts under OUT/<entry>/ and its line in OUT/results.ndjson.
//!
//! An entry is a file (the run's one input, for a pipeline with one input slot) or a folder (its
//! files are the run's inputs: all in the one slot, or each named after its slot,
//! `person.jpg` and `garment.jpg`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::client::ApiClient;
use crate::run_cmd::{content_type_of, parse_settings};

/// What `run --batch` was asked to do.
pub struct BatchArgs {
    pub pipeline: String,
    pub dir: PathBuf,
    pub set: Vec<String>,
    pub out: Option<PathBuf>,
    pub deadline_s: Option<u64>,
}

/// One run of the batch: its name (the entry's) and its files by slot.
struct Entry {
    name: String,
    files: BTreeMap<String, Vec<PathBuf>>,
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    out.retain(|p| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    });
    out.sort();
    Ok(out)
}

fn entries(dir: &Path, slots: &[String]) -> Result<Vec<Entry>> {
    let mut out = vec![];
    for path in sorted_dir(dir)? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: unusable name", path.display()))?
            .to_string();
        let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        if path.is_dir() {
            for f in sorted_dir(&path)?.into_iter().filter(|f| f.is_file()) {
                let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let slot = match slots {
                    [only] => only.clone(),
                    _ if slots.iter().any(|s| s == stem) => stem.to_string(),
                    _ => bail!(
                        "{}: this pipeline takes several inputs ({}); name each file after its slot",
                        f.display(),
                        slots.join(", ")
                    ),
                };
                files.entry(slot).or_default().push(f);
            }
        } else if let [only] = slots {
            files.insert(only.clone(), vec![path.clone()]);
        } else {
            bail!(
                "{}: this pipeline takes several inputs ({}); put each run's files in a folder",
                path.display(),
                slots.join(", ")
            );
        }
        if files.is_empty() {
            bail!("{}: no input files", path.display());
        }
        out.push(Entry { name, files });
    }
    if out.is_empty() {
        bail!("{}: no entries to run", dir.display());
    }
    Ok(out)
}

/// Runs the batch; fails when any run did not succeed (after writing every result).
pub async fn run(client: &ApiClient, args: BatchArgs) -> Result<Vec<Value>> {
    let pipelines = client.pipelines().await?;
    let spec = pipelines["pipelines"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == args.pipeline.as_str()))
        .cloned()
        .with_context(|| format!("unknown pipeline {:?}", args.pipeline))?;
    let slots: Vec<String> = spec["inputs"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let entries = entries(&args.dir, &slots)?;
    let mut items = vec![];
    for e in &entries {
        let mut inputs = Map::new();
        for (slot, paths) in &e.files {
            let mut list = vec![];
            for p in paths {
                let size = std::fs::metadata(p)?.len();
                let filename = p.file_name().and_then(|n| n.to_str()).unwrap_or("input");
                list.push(json!({"filename": filename, "content_type": content_type_of(p)?, "size": size}));
            }
            inputs.insert(slot.clone(), Value::Array(list));
        }
        items.push(json!({"inputs": inputs, "metadata": {"entry": e.name}}));
    }
    let mut body =
        json!({"pipeline": args.pipeline, "settings": parse_settings(&args.set)?, "runs": items});
    if let Some(d) = args.deadline_s {
        body["deadline_s"] = json!(d);
    }
    let batch = client.create_batch(&body, None).await?;
    let id = batch["id"].as_str().context("a batch id")?.to_string();
    let runs = batch["runs"].as_array().cloned().unwrap_or_default();
    let mut names = BTreeMap::new();
    for (run, entry) in runs.iter().zip(&entries) {
        let run_id = run["id"].as_str().unwrap_or_default().to_string();
        let mut files = vec![];
        for up in run["uploads"].as_array().cloned().unwrap_or_default() {
            let slot = up["slot"].as_str().unwrap_or_default();
            let index = up["index"].as_u64().unwrap_or(0) as usize;
            let path = entry
                .files
                .get(slot)
                .and_then(|paths| paths.get(index))
                .with_context(|| {
                    format!(
                        "the server asked for an upload this run has no file for: {slot}[{index}]"
                    )
                })?
                .clone();
            files.push((up, path));
        }
        client.upload_all(&files).await?;
        names.insert(run_id, entry.name.clone());
    }
    eprintln!("batch {id}: {} runs of {}", runs.len(), args.pipeline);

    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("spaceport-out").join(&id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let results_path = out.join("results.ndjson");
    let mut results = std::fs::File::create(&results_path)
        .with_context(|| format!("creating {}", results_path.display()))?;
    let mut finished = vec![];
    let stream = client.batch_results(&id).await?;
    futures::pin_mut!(stream);
    while let Some(run) = stream.next().await {
        let run = run?;
        let run_id = run["id"].as_str().unwrap_or_default().to_string();
        let name = names
            .get(&run_id)
            .cloned()
            .unwrap_or_else(|| run_id.clone());
        let status = run["status"].as_str().unwrap_or("?").to_string();
        if status == "succeeded" {
            let dir = out.join(&name);
            for a in run["artifacts"].as_array().cloned().unwrap_or_default() {
                let artifact = a["name"].as_str().unwrap_or_default();
                let filename = a["filename"].as_str().unwrap_or(artifact);
                client
                    .download_artifact(&run_id, artifact, filename, &dir)
                    .await?;
            }
            println!("{name}: {run_id} succeeded → {}", dir.display());
        } else {
            println!(
                "{name}: {run_id} {status}: {} {}",
                run["error"]["code"].as_str().unwrap_or(""),
                run["error"]["message"].as_str().unwrap_or("")
            );
        }
        writeln!(results, "{}", serde_json::to_string(&run)?)?;
        results.flush()?;
        finished.push(run);
    }
    let failed = finished
        .iter()
        .filter(|r| r["status"] != "succeeded")
        .count();
    if finished.len() < runs.len() {
        bail!(
            "batch {id}: the results stream ended after {} of {} runs",
            finished.len(),
            runs.len()
        );
    }
    if failed > 0 {
        bail!(
            "batch {id}: {failed} of {} runs did not succeed (see {})",
            runs.len(),
            results_path.display()
        );
    }
    Ok(finished)
}
