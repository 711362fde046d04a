//! Pipelines are data: one TOML file per pipeline under `pipelines/` says what inputs it takes, its
//! user-facing settings (with backend spellings), how its backend is called and which outputs become
//! artifacts. Everything is checked at load, so a bad file fails naming the file and the key.

mod chain;
mod failover;
mod inputs;
mod load;
mod local;
mod model_server;
mod schema;
mod set;
mod settings;
mod spec;
mod values;

pub use chain::{StageInput, StageSpec};
pub use inputs::{DeclaredFile, check_filename};
pub use load::LoadError;
pub use local::LocalFunction;
pub use model_server::{
    AnswerForm, ChatProtocol, DEFAULT_MAX_ANSWER_BYTES, DEFAULT_REQUEST_TIMEOUT_S, ModelServer,
    OptionSpec, PromptContext, RequestSpec, answer_file, json_in_answer, render,
};
pub use schema::BackendDescription;
pub use set::{BUILTIN_PIPELINES, PipelineSet};
pub use spec::{
    Arg, ArgSpec, BackendSpec, CallSpec, DEFAULT_ARTIFACT_MAX_BYTES, DEFAULT_LAYOUT,
    DEFAULT_MAX_FRAMES, Failover, FileForm, InputOrder, InputSpec, LayoutOutput, LayoutSpec,
    OutputRef, OutputSpec, Pipeline, SettingSpec, ValueKind, ValueSpec, space_base_url,
    toml_to_json,
};
pub use values::MAX_VALUE_BYTES;
