//! A `chain` backend: stages, each a run of another pipeline (a child run with its own events),
//! started one after another, each stage's inputs taken from the chain's own input slots or
//! from an earlier stage's artifacts, its settings from the chain's settings or constants. The
//! chain's artifacts are stage artifacts it names (`[outputs.mesh] stage = "…", artifact = "…"`),
//! copied in the store once the last stage succeeded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::{LoadError, load_err};
use super::model_server::OptionSpec;
use super::spec::{BackendSpec, Pipeline};

/// One stage of a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Names the stage in progress, errors and later stages' inputs.
    pub name: String,
    /// The pipeline the stage runs (not itself a chain).
    pub pipeline: String,
    /// Each input slot of the stage's pipeline and where its files come from.
    pub inputs: BTreeMap<String, StageInput>,
    /// Settings of the stage's pipeline: the chain's setting of that name, or a constant;
    /// the rest take their defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, OptionSpec>,
}

/// Where a stage's input files come from: exactly one of the chain's slot `input`, or
/// `stage` and `artifact` (an earlier stage's artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

impl Pipeline {
    /// A chain's stages (empty for other kinds).
    pub fn stages(&self) -> &[StageSpec] {
        match &self.backend {
            BackendSpec::Chain { stages } => stages,
            _ => &[],
        }
    }

    /// The loader's checks of a chain that need no other pipeline: stage names, where each
    /// input and setting comes from, where each artifact comes from. `PipelineSet` checks the
    /// stage pipelines themselves once every file is loaded.
    pub(super) fn check_chain(&self, file: &str) -> Result<(), LoadError> {
        let stages = self.stages();
        if stages.is_empty() {
            return Err(load_err(
                file,
                "backend.stages",
                "a chain has at least one stage",
            ));
        }
        let mut earlier: Vec<&str> = vec![];
        for (i, stage) in stages.iter().enumerate() {
            let key = format!("backend.stages[{i}]");
            let err = |k: &str, m: String| Err(load_err(file, format!("{key}.{k}"), m));
            if stage.name.is_empty() || earlier.contains(&stage.name.as_str()) {
                return err("name", format!("{:?} is empty or listed twice", stage.name));
            }
            if stage.pipeline == self.name {
                return err("pipeline", "a chain cannot run itself".into());
            }
            for (slot, src) in &stage.inputs {
                match (&src.input, &src.stage, &src.artifact) {
                    (Some(own), None, None) if self.inputs.contains_key(own) => {}
                    (Some(own), None, None) => {
                        return err(
                            &format!("inputs.{slot}.input"),
                            format!("the chain has no input slot {own:?}"),
                        );
                    }
                    (None, Some(s), Some(_)) if earlier.contains(&s.as_str()) => {}
                    (None, Some(s), Some(_)) => {
                        return err(
                            &format!("inputs.{slot}.stage"),
                            format!("{s:?} is not an earlier stage"),
                        );
                    }
                    _ => {
                        return err(
                            &format!("inputs.{slot}"),
                            "give input = SLOT, or stage and artifact".into(),
                        );
                    }
                }
            }
            for (name, opt) in &stage.settings {
                match (&opt.setting, &opt.value) {
                    (Some(s), None) if !self.settings.contains_key(s) => {
                        return err(
                            &format!("settings.{name}"),
                            format!("the chain has no setting {s:?}"),
                        );
                    }
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => {
                        return err(
                            &format!("settings.{name}"),
                            "give exactly one of setting and value".into(),
                        );
                    }
                }
            }
            earlier.push(&stage.name);
        }
        if !self.values.is_empty() {
            return Err(load_err(
                file,
                "values",
                "a chain keeps its stages' values on the stage runs",
            ));
        }
        for (name, out) in &self.outputs {
            match (&out.stage, &out.artifact) {
                (Some(s), Some(_)) if earlier.contains(&s.as_str()) => {}
                _ => {
                    return Err(load_err(
                        file,
                        format!("outputs.{name}"),
                        "a chain's artifact names a stage and its artifact (stage = …, artifact = …)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The checks of a chain against the pipelines it runs (`stage` names one of `all`).
    pub(super) fn check_chain_stages(
        &self,
        file: &str,
        all: &BTreeMap<String, Pipeline>,
    ) -> Result<(), LoadError> {
        let stages = self.stages();
        let get = |i: usize, name: &str| {
            all.get(name).ok_or_else(|| {
                load_err(
                    file,
                    format!("backend.stages[{i}].pipeline"),
                    format!("no pipeline {name:?}"),
                )
            })
        };
        for (i, stage) in stages.iter().enumerate() {
            let key = format!("backend.stages[{i}]");
            let p = get(i, &stage.pipeline)?;
            if matches!(p.backend, BackendSpec::Chain { .. }) {
                return Err(load_err(
                    file,
                    format!("{key}.pipeline"),
                    format!("{:?} is a chain itself", stage.pipeline),
                ));
            }
            for (slot, spec) in &p.inputs {
                if spec.min > 0 && !stage.inputs.contains_key(slot) {
                    return Err(load_err(
                        file,
                        format!("{key}.inputs"),
                        format!("{:?} needs its input slot {slot:?}", stage.pipeline),
                    ));
                }
            }
            for (slot, src) in &stage.inputs {
                if !p.inputs.contains_key(slot) {
                    return Err(load_err(
                        file,
                        format!("{key}.inputs.{slot}"),
                        format!("{:?} has no input slot {slot:?}", stage.pipeline),
                    ));
                }
                if let (Some(s), Some(a)) = (&src.stage, &src.artifact) {
                    self.check_stage_artifact(file, &format!("{key}.inputs.{slot}"), s, a, all)?;
                }
            }
            for name in stage.settings.keys() {
                if !p.settings.contains_key(name) {
                    return Err(load_err(
                        file,
                        format!("{key}.settings.{name}"),
                        format!("{:?} has no setting {name:?}", stage.pipeline),
                    ));
                }
            }
        }
        for (name, out) in &self.outputs {
            if let (Some(s), Some(a)) = (&out.stage, &out.artifact) {
                self.check_stage_artifact(file, &format!("outputs.{name}"), s, a, all)?;
            }
        }
        Ok(())
    }

    fn check_stage_artifact(
        &self,
        file: &str,
        key: &str,
        stage: &str,
        artifact: &str,
        all: &BTreeMap<String, Pipeline>,
    ) -> Result<(), LoadError> {
        let makes = self
            .stages()
            .iter()
            .find(|s| s.name == stage)
            .and_then(|s| all.get(&s.pipeline))
            .is_some_and(|p| p.outputs.contains_key(artifact));
        if makes {
            Ok(())
        } else {
            Err(load_err(
                file,
                key,
                format!("stage {stage:?} makes no artifact {artifact:?}"),
            ))
        }
    }
}
