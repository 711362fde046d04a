//! `spaceport pipelines check` and `spaceport pipelines new`: a pipeline file against a live
//! Space, and a starting file from one. The Space is read with the same Gradio client the steps
//! use (`/config`, `/info`), with the same options (`Config::space_client_options`): the token,
//! when configured, goes only where the steps would send it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use spaceport_core::pipeline::{Pipeline, space_base_url};
use spaceport_gradio::check::check;
use spaceport_gradio::scaffold::{Scaffold, scaffold};
use spaceport_gradio::{ClientOptions, Cookies, GradioClient};

fn client(url: &str, options: ClientOptions) -> Result<GradioClient> {
    Ok(GradioClient::new(url, options)?)
}

/// Checks `file` against the Space at `space` (else the file's own URL); prints every mismatch
/// and fails when the file fits none of its layouts.
pub async fn check_file(
    file: &Path,
    space: Option<&str>,
    options: ClientOptions,
) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pipeline = Pipeline::from_toml(&file.display().to_string(), &text)?;
    if let Some(server) = pipeline.model_server() {
        return check_model_server(file, &pipeline, server, space).await;
    }
    let url = match space {
        Some(u) => u.to_string(),
        None => pipeline
            .backend
            .space_url()
            .with_context(|| format!("{}: not a Space pipeline", file.display()))?,
    };
    let gradio = client(&url, options)?;
    let config = gradio
        .config(&Cookies::default())
        .await
        .with_context(|| format!("reading {url}/config"))?;
    let report = check(&pipeline, &config);
    let mut out = format!(
        "{} against {url} (Gradio {}, protocol {})\n",
        file.display(),
        config.version.as_deref().unwrap_or("?"),
        config.protocol
    );
    let many = report.layouts.len() > 1;
    for l in &report.layouts {
        let what = if many {
            format!("layout {:?} ({})", l.name, l.key)
        } else {
            "the file".to_string()
        };
        if l.mismatches.is_empty() {
            out.push_str(&format!("  ok: {what} fits the Space\n"));
        } else {
            out.push_str(&format!(
                "  {what}: {} mismatch{}\n",
                l.mismatches.len(),
                if l.mismatches.len() == 1 { "" } else { "es" }
            ));
            for m in &l.mismatches {
                out.push_str(&format!("    {m}\n"));
            }
        }
    }
    if !report.passes() {
        bail!("{out}{}: fits no layout of the Space", file.display());
    }
    Ok(out)
}

/// Checks that the model server an `http_model` file names (or `url`) serves every model its
/// requests use; prints each, and fails naming the missing ones with what the server has.
async fn check_model_server(
    file: &Path,
    pipeline: &Pipeline,
    server: spaceport_core::pipeline::ModelServer<'_>,
    url: Option<&str>,
) -> Result<String> {
    let url = url.unwrap_or(server.url);
    let chat = spaceport_chat::HttpChat::new()?;
    let served = chat
        .served_models(server.protocol, url)
        .await
        .with_context(|| format!("asking {url} for its models"))?;
    let mut out = format!(
        "{} against {url} ({:?}; {} model(s) served)\n",
        file.display(),
        server.protocol,
        served.len()
    );
    let mut missing = vec![];
    for req in server.requests {
        let model = req.model.as_deref().unwrap_or(server.model);
        if served.iter().any(|m| m == model) {
            out.push_str(&format!(
                "  ok: request {} uses {model}, which is served\n",
                req.name
            ));
        } else {
            missing.push(format!(
                "request {} uses {model}, which the server does not serve (it has: {})",
                req.name,
                served.join(", ")
            ));
        }
    }
    if !missing.is_empty() {
        bail!(
            "{out}  {}\n{}: {} model(s) missing",
            missing.join("\n  "),
            pipeline.name,
            missing.len()
        );
    }
    Ok(out)
}

/// What `pipelines new` needs.
pub struct NewArgs {
    pub url: String,
    /// `owner/name`; by default derived from an `*.hf.space` URL, else `owner/space`.
    pub id: Option<String>,
    pub api_name: Option<String>,
    pub fn_index: Option<u64>,
    pub name: Option<String>,
}

/// A starting pipeline file for one endpoint of the Space at `args.url`.
pub async fn new_file(args: &NewArgs, options: ClientOptions) -> Result<String> {
    let gradio = client(&args.url, options)?;
    let cookies = Cookies::default();
    let config = gradio
        .config(&cookies)
        .await
        .with_context(|| format!("reading {}/config", args.url))?;
    let info = gradio.info(&config.api_prefix, &cookies).await?;
    let endpoint = match (&args.api_name, args.fn_index) {
        (Some(n), _) => config
            .endpoint(n)
            .with_context(|| format!("the Space has no endpoint {n:?}"))?,
        (None, Some(i)) => config
            .by_fn_index(i)
            .with_context(|| format!("the Space has no fn_index {i}"))?,
        (None, None) => {
            let names: Vec<String> = config
                .endpoints
                .iter()
                .filter(|e| e.shown && e.outputs.iter().any(|c| !c.is_state()))
                .map(|e| match &e.api_name {
                    Some(n) => format!("--api-name /{n}"),
                    None => format!("--fn-index {}", e.fn_index),
                })
                .collect();
            bail!("say which endpoint: {}", names.join(", "));
        }
    };
    let id = args.id.clone().unwrap_or_else(|| space_id(&args.url));
    let hub = space_base_url(&id) == args.url.trim_end_matches('/');
    let name = args.name.clone().unwrap_or_else(|| {
        id.rsplit('/')
            .next()
            .unwrap_or("space")
            .to_ascii_lowercase()
            .replace(['_', '.'], "-")
    });
    let text = scaffold(&Scaffold {
        name: &name,
        space: &id,
        url: (!hub).then_some(args.url.as_str()),
        config: &config,
        info: info.as_ref(),
        endpoint,
    })
    .map_err(anyhow::Error::msg)?;
    // What we write must load: a scaffold that does not is our bug, not the user's.
    Pipeline::from_toml(&format!("{name}.toml"), &text)
        .with_context(|| format!("the written pipeline does not load:\n{text}"))?;
    Ok(text)
}

/// `owner/name` from `https://owner-name.hf.space` (the first dash splits: a guess the user
/// edits), else a placeholder.
fn space_id(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|h| h.split(['/', ':']).next())
        .and_then(|h| h.strip_suffix(".hf.space"))
        .and_then(|h| h.split_once('-'))
        .map(|(o, n)| format!("{o}/{n}"))
        .unwrap_or_else(|| "owner/space".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_id_is_guessed_from_a_hub_url() {
        assert_eq!(space_id("https://facebook-vggt.hf.space"), "facebook/vggt");
        assert_eq!(space_id("http://127.0.0.1:7860"), "owner/space");
    }
}
