//! Every pipeline of a deployment, loaded together so fallbacks can be checked, with the
//! per-deployment overrides (a Space's URL, a model's path) and the pipelines built into the binary.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{LoadError, load_err};
use super::spec::{BackendSpec, Pipeline};
use crate::error::Error;

/// The pipelines built into every binary (the CLI, the functions, the edge), as `(file, text)`.
pub const BUILTIN_PIPELINES: &[(&str, &str)] = &[
    ("vggt.toml", include_str!("../../../../pipelines/vggt.toml")),
    (
        "vggt-onnx.toml",
        include_str!("../../../../pipelines/vggt-onnx.toml"),
    ),
    (
        "kolors-tryon.toml",
        include_str!("../../../../pipelines/kolors-tryon.toml"),
    ),
    (
        "idm-vton.toml",
        include_str!("../../../../pipelines/idm-vton.toml"),
    ),
    (
        "hunyuan3d.toml",
        include_str!("../../../../pipelines/hunyuan3d.toml"),
    ),
    (
        "hunyuan3d-shape.toml",
        include_str!("../../../../pipelines/hunyuan3d-shape.toml"),
    ),
    (
        "wonder3d.toml",
        include_str!("../../../../pipelines/wonder3d.toml"),
    ),
    (
        "mesh-convert.toml",
        include_str!("../../../../pipelines/mesh-convert.toml"),
    ),
    (
        "vggt-ply.toml",
        include_str!("../../../../pipelines/vggt-ply.toml"),
    ),
    (
        "vggt-render.toml",
        include_str!("../../../../pipelines/vggt-render.toml"),
    ),
    (
        "vlm-describe.toml",
        include_str!("../../../../pipelines/vlm-describe.toml"),
    ),
    (
        "vlm-task-events.toml",
        include_str!("../../../../pipelines/vlm-task-events.toml"),
    ),
    (
        "remove-background.toml",
        include_str!("../../../../pipelines/remove-background.toml"),
    ),
    (
        "segment-then-3d.toml",
        include_str!("../../../../pipelines/segment-then-3d.toml"),
    ),
];

/// Every pipeline of a deployment, checked together (fallbacks must exist).
#[derive(Debug, Clone, Default)]
pub struct PipelineSet {
    pipelines: BTreeMap<String, Pipeline>,
}

impl PipelineSet {
    /// Loads every `*.toml` under `dir`. The file stem must equal the pipeline's name.
    pub fn load_dir(dir: &Path) -> Result<PipelineSet, LoadError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| load_err(&dir.display().to_string(), "", e.to_string()))?;
        let mut files = vec![];
        for entry in entries {
            let path = entry
                .map_err(|e| load_err(&dir.display().to_string(), "", e.to_string()))?
                .path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| load_err(&path.display().to_string(), "", e.to_string()))?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        PipelineSet::from_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// The pipelines built into the binary.
    pub fn builtin() -> PipelineSet {
        PipelineSet::from_files(BUILTIN_PIPELINES.iter().copied())
            .expect("the built-in pipelines load (tested)")
    }

    /// Loads pipelines from `(file name, text)` pairs.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PipelineSet, LoadError> {
        let mut pipelines = BTreeMap::new();
        for (file, text) in files {
            let p = Pipeline::from_toml(file, text)?;
            let stem = Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("");
            if stem != p.name {
                return Err(load_err(
                    file,
                    "name",
                    format!("{:?} must match the file name {stem:?}", p.name),
                ));
            }
            pipelines.insert(p.name.clone(), p);
        }
        for p in pipelines.values() {
            let file = format!("{}.toml", p.name);
            p.check_chain_stages(&file, &pipelines)?;
            for fb in p.fallbacks() {
                let Some(other) = pipelines.get(fb).filter(|o| o.name != p.name) else {
                    return Err(load_err(
                        &file,
                        "fallback",
                        format!("no other pipeline named {fb:?}"),
                    ));
                };
                // A run keeps its inputs and promises its outputs whichever backend serves it.
                if let Some(slot) = p.inputs.keys().find(|s| !other.inputs.contains_key(*s)) {
                    return Err(load_err(
                        &file,
                        "fallback",
                        format!("fallback {fb:?} has no input slot {slot:?}"),
                    ));
                }
                if let Some(out) = p.outputs.keys().find(|o| !other.outputs.contains_key(*o)) {
                    return Err(load_err(
                        &file,
                        "fallback",
                        format!("fallback {fb:?} makes no output {out:?}"),
                    ));
                }
            }
        }
        Ok(PipelineSet { pipelines })
    }

    /// The pipeline called `name`.
    pub fn get(&self, name: &str) -> Result<&Pipeline, Error> {
        self.pipelines.get(name).ok_or_else(|| Error::NotFound {
            what: "pipeline",
            id: name.to_string(),
        })
    }

    /// Every pipeline, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Pipeline> {
        self.pipelines.values()
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Pipeline, Error> {
        self.pipelines.get_mut(name).ok_or_else(|| Error::NotFound {
            what: "pipeline",
            id: name.to_string(),
        })
    }

    /// Replaces a Space pipeline's base URL (a duplicated or local Space).
    pub fn set_space_url(&mut self, name: &str, new_url: &str) -> Result<(), Error> {
        match &mut self.get_mut(name)?.backend {
            BackendSpec::Space { url, .. } => {
                *url = Some(new_url.trim_end_matches('/').to_string());
                Ok(())
            }
            _ => Err(Error::validation(
                "space_url",
                format!("pipeline {name:?} does not call a Space"),
            )),
        }
    }

    /// Points a model server pipeline at another server (a deployment's own Ollama or vLLM).
    pub fn set_server_url(&mut self, name: &str, new_url: &str) -> Result<(), Error> {
        match &mut self.get_mut(name)?.backend {
            BackendSpec::HttpModel { url, .. } => {
                if !(new_url.starts_with("http://") || new_url.starts_with("https://")) {
                    return Err(Error::validation(
                        "server_url",
                        format!("{new_url:?} is not an http(s) URL"),
                    ));
                }
                *url = new_url.trim_end_matches('/').to_string();
                Ok(())
            }
            _ => Err(Error::validation(
                "server_url",
                format!("pipeline {name:?} does not ask a model server"),
            )),
        }
    }

    /// Sets how many jobs of a pipeline's backend may be in flight at once (0: no limit).
    pub fn set_max_in_flight(&mut self, name: &str, n: u32) -> Result<(), Error> {
        self.get_mut(name)?.max_in_flight = Some(n);
        Ok(())
    }

    /// Holds every local-model pipeline's input slots to `max_frames` files: the most images
    /// the deployment's model runner takes (sized from memory). A run with more is refused
    /// when it is created, naming the slot, instead of failing in the worker after its inputs
    /// were uploaded and read; the pipeline's description shows the lower limit.
    pub fn cap_frames(&mut self, max_frames: usize) {
        let max_frames = max_frames.max(1);
        for p in self.pipelines.values_mut() {
            if matches!(p.backend, BackendSpec::Onnx { .. }) {
                for slot in p.inputs.values_mut() {
                    slot.max = slot.max.min(max_frames);
                    slot.min = slot.min.min(slot.max);
                }
            }
        }
    }

    /// Replaces an ONNX pipeline's model path.
    pub fn set_model(&mut self, name: &str, path: &str) -> Result<(), Error> {
        match &mut self.get_mut(name)?.backend {
            BackendSpec::Onnx { model, .. } => {
                *model = path.to_string();
                Ok(())
            }
            _ => Err(Error::validation(
                "model",
                format!("pipeline {name:?} does not run a local model"),
            )),
        }
    }
}
