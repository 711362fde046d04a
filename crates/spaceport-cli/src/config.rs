//! Layered configuration: built-in defaults, then `spaceport.toml` (the working directory's, or
//! `--config`), then `SPACEPORT_*` environment variables, then command-line flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use spaceport_core::PipelineSet;

/// Per-pipeline overrides: point a Space pipeline at a duplicated or local Space, or an ONNX
/// pipeline at another model file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineOverride {
    pub space_url: Option<String>,
    pub model: Option<String>,
}

/// The settings of the `spaceport` command.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded stack keeps its SQLite file and blobs.
    pub data_dir: Option<PathBuf>,
    /// Where `serve` listens.
    pub bind: Option<String>,
    /// A directory of pipeline files replacing the built-in ones.
    pub pipelines_dir: Option<PathBuf>,
    /// Hugging Face token sent to Spaces (never logged).
    pub hf_token: Option<String>,
    /// A running Spaceport server for `run` and `runs` (otherwise the embedded stack runs in-process).
    pub server: Option<String>,
    /// Seconds a worker's claim on a run lasts without renewal (a crashed worker's runs are
    /// picked up after about this long). Default 30.
    pub lease_s: Option<u64>,
    /// Seconds a received step message stays hidden between heartbeats. Default 30.
    pub visibility_s: Option<u64>,
    /// Where local models run: `cpu` (default), `cuda` or `tensorrt` (a GPU build is required;
    /// asking for a GPU that cannot start is an error, never a silent CPU run).
    pub model_provider: Option<String>,
    /// The most images one local-model run takes (default 64; size it from memory).
    pub max_frames: Option<usize>,
    /// The ONNX Runtime shared library (default: `ORT_DYLIB_PATH`).
    pub ort_dylib_path: Option<PathBuf>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineOverride>,
}

/// The pipelines shipped in the binary.
const BUILTIN_PIPELINES: &[(&str, &str)] = &[
    ("vggt.toml", include_str!("../../../pipelines/vggt.toml")),
    (
        "vggt-onnx.toml",
        include_str!("../../../pipelines/vggt-onnx.toml"),
    ),
];

impl Config {
    /// Defaults → file → environment.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut cfg = Config::default();
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("spaceport.toml")).filter(|p| p.exists()),
        };
        if let Some(p) = path {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            cfg = toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        }
        cfg.apply_env(std::env::vars())?;
        Ok(cfg)
    }

    /// Applies `SPACEPORT_*` variables.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (k, v) in vars {
            let Some(name) = k.strip_prefix("SPACEPORT_") else {
                if k == "HF_TOKEN" && self.hf_token.is_none() {
                    self.hf_token = Some(v);
                }
                continue;
            };
            match name {
                "DATA_DIR" => self.data_dir = Some(v.into()),
                "BIND" => self.bind = Some(v),
                "PIPELINES_DIR" => self.pipelines_dir = Some(v.into()),
                "HF_TOKEN" => self.hf_token = Some(v),
                "SERVER" => self.server = Some(v),
                "LEASE_S" => self.lease_s = Some(parse_secs(&k, &v)?),
                "VISIBILITY_S" => self.visibility_s = Some(parse_secs(&k, &v)?),
                "MODEL_PROVIDER" => self.model_provider = Some(v),
                "MAX_FRAMES" => {
                    self.max_frames = Some(
                        v.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .with_context(|| format!("{k}={v:?}: expected a positive number"))?,
                    )
                }
                "LOG" => {}
                _ => {
                    if let Some(p) = name.strip_prefix("SPACE_URL_") {
                        self.pipelines
                            .entry(pipeline_name(p))
                            .or_default()
                            .space_url = Some(v);
                    } else if let Some(p) = name.strip_prefix("MODEL_") {
                        self.pipelines.entry(pipeline_name(p)).or_default().model = Some(v);
                    } else {
                        bail!("unknown environment variable {k} (see `spaceport --help`)");
                    }
                }
            }
        }
        Ok(())
    }

    /// The data directory (default `./spaceport-data`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("spaceport-data"))
    }

    /// The pipelines, with overrides applied.
    pub fn pipelines(&self) -> Result<PipelineSet> {
        let mut set = match &self.pipelines_dir {
            Some(dir) => PipelineSet::load_dir(dir)?,
            None => PipelineSet::from_files(BUILTIN_PIPELINES.iter().copied())?,
        };
        for (name, o) in &self.pipelines {
            if let Some(u) = &o.space_url {
                set.set_space_url(name, u)
                    .with_context(|| format!("space_url override for pipeline {name}"))?;
            }
            if let Some(m) = &o.model {
                // An override given on this machine is relative to the working directory.
                let m = &std::path::absolute(m)
                    .with_context(|| format!("model path {m:?}"))?
                    .display()
                    .to_string();
                set.set_model(name, m)
                    .with_context(|| format!("model override for pipeline {name}"))?;
            }
        }
        Ok(set)
    }
}

fn parse_secs(var: &str, v: &str) -> Result<u64> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{var}={v:?}: expected a positive number of seconds"),
    }
}

/// `SPACE_URL_VGGT_ONNX` names pipeline `vggt-onnx`.
fn pipeline_name(env_suffix: &str) -> String {
    env_suffix.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_names_pipelines() {
        let mut cfg: Config = toml::from_str(
            "bind = \"127.0.0.1:9000\"\n[pipelines.vggt]\nspace_url = \"http://a\"\n",
        )
        .unwrap();
        cfg.apply_env([
            ("SPACEPORT_BIND".to_string(), "127.0.0.1:9001".to_string()),
            (
                "SPACEPORT_SPACE_URL_VGGT".to_string(),
                "http://127.0.0.1:7860".to_string(),
            ),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
        assert_eq!(cfg.bind.as_deref(), Some("127.0.0.1:9001"));
        let set = cfg.pipelines().unwrap();
        let spaceport_core::pipeline::BackendSpec::Space { url, .. } =
            &set.get("vggt").unwrap().backend
        else {
            panic!()
        };
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:7860"));
    }

    #[test]
    fn unknown_settings_are_errors() {
        assert!(toml::from_str::<Config>("bnd = 1").is_err());
        let mut cfg = Config::default();
        assert!(
            cfg.apply_env([("SPACEPORT_BINDD".to_string(), "x".to_string())])
                .is_err()
        );
        cfg.apply_env([(
            "SPACEPORT_SPACE_URL_NOPE".to_string(),
            "http://x".to_string(),
        )])
        .unwrap();
        assert!(cfg.pipelines().is_err());
    }
}
