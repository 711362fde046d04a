//! The ONNX Runtime session: loading the runtime library (`load-dynamic`), registering the execution
//! provider the configuration asks for, checking the model against the VGGT export contract at load,
//! and one inference call. One `Model` per worker; `run` takes `&mut self` as ort's `Session` does.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array4, ArrayD, Axis, Dimension, Ix2, Ix3, Ix4};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::config::{IoNames, ModelConfig, Provider};
use crate::error::{Error, Result};
use crate::predictions::RawOutputs;

/// ONNX Runtime allows one environment per process; every `Model` shares it.
static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// The hint every "runtime missing" error carries.
const SETUP_HINT: &str = "set ORT_DYLIB_PATH to libonnxruntime.so (for the tests: `bash scripts/test-env.sh`, \
     then ORT_DYLIB_PATH=.venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.23.2)";

/// Loads the ONNX Runtime library once per process: `dylib`, else `ORT_DYLIB_PATH`.
pub fn init_runtime(dylib: Option<&Path>) -> Result<ort::environment::Environment> {
    let path = dylib
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    let env = ENVIRONMENT.get_or_init(|| {
        let path = path
            .clone()
            .ok_or_else(|| format!("no ONNX Runtime library given: {SETUP_HINT}"))?;
        if !path.is_file() {
            return Err(format!("{path:?} does not exist: {SETUP_HINT}"));
        }
        ort::init_from(&path)
            .map_err(|e| format!("{e}: {SETUP_HINT}"))?
            .with_name("spaceport-onnx")
            .build()
            .map_err(|e| e.to_string())
    });
    env.clone()
        .map_err(|message| Error::Runtime { path, message })
}

/// The rank each output has with its leading batch dimension of 1.
fn output_ranks(io: &IoNames) -> [(&str, usize); 6] {
    [
        (io.pose_enc.as_str(), 3),
        (io.depth.as_str(), 5),
        (io.depth_conf.as_str(), 4),
        (io.world_points.as_str(), 5),
        (io.world_points_conf.as_str(), 4),
        (io.images.as_str(), 5),
    ]
}

/// A loaded model whose inputs and outputs match the contract.
pub struct Model {
    session: Session,
    io: IoNames,
    path: PathBuf,
    provider: Provider,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model in `cfg` on its provider and checks its inputs and outputs.
    pub fn load(cfg: &ModelConfig) -> Result<Self> {
        let env = init_runtime(cfg.ort_dylib_path.as_deref())?;
        let path = cfg.path.clone();
        if !path.is_file() {
            return Err(Error::ModelLoad {
                source: ort::Error::new(format!("no model file at {path:?}")),
                path,
            });
        }
        let builder = Session::builder(&env).map_err(|source| Error::ModelLoad {
            path: path.clone(),
            source,
        })?;
        let builder = with_provider(builder, cfg)?;
        let mut builder = builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| Error::ModelLoad {
                path: path.clone(),
                source: e.into(),
            })?;
        let session = builder
            .commit_from_file(&path)
            .map_err(|source| classify_load_error(&path, source))?;
        let model = Model {
            session,
            io: cfg.io.clone(),
            path,
            provider: cfg.provider,
        };
        model.check_contract()?;
        tracing::info!(model = ?model.path, provider = model.provider.as_str(), "model loaded");
        Ok(model)
    }

    /// The provider inference runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn contract_error(&self, message: String) -> Error {
        Error::Contract {
            path: self.path.clone(),
            message,
        }
    }

    /// Checks names, element types, ranks and the static dimensions the contract fixes.
    fn check_contract(&self) -> Result<()> {
        let inputs = self.session.inputs();
        let names =
            |o: &[ort::value::Outlet]| o.iter().map(|x| x.name().to_owned()).collect::<Vec<_>>();
        let Some(input) = inputs.iter().find(|i| i.name() == self.io.input_images) else {
            return Err(self.contract_error(format!(
                "no input named {:?} (the model's inputs are {:?}; set the input name in the pipeline file)",
                self.io.input_images,
                names(inputs)
            )));
        };
        if inputs.len() != 1 {
            return Err(self.contract_error(format!(
                "expected exactly one input, found {:?}",
                names(inputs)
            )));
        }
        let shape = self.tensor_f32(input.name(), input.dtype())?;
        if shape.len() != 4 {
            return Err(self.contract_error(format!(
                "input {:?} has rank {} (shape {shape:?}), expected rank 4 [S, 3, 518, 518]",
                input.name(),
                shape.len()
            )));
        }
        if shape[1] != -1 && shape[1] != 3 {
            return Err(self.contract_error(format!(
                "input {:?} has {} channels, expected 3",
                input.name(),
                shape[1]
            )));
        }
        let outputs = self.session.outputs();
        for (name, rank) in output_ranks(&self.io) {
            let Some(out) = outputs.iter().find(|o| o.name() == name) else {
                return Err(self.contract_error(format!(
                    "no output named {name:?} (the model's outputs are {:?})",
                    names(outputs)
                )));
            };
            let shape = self.tensor_f32(name, out.dtype())?;
            if shape.len() != rank {
                return Err(self.contract_error(format!(
                    "output {name:?} has rank {} (shape {shape:?}), expected rank {rank} with a leading batch dimension of 1",
                    shape.len()
                )));
            }
            if shape[0] != -1 && shape[0] != 1 {
                return Err(self.contract_error(format!(
                    "output {name:?} has a leading dimension of {}, expected a batch of 1",
                    shape[0]
                )));
            }
        }
        Ok(())
    }

    fn tensor_f32(&self, name: &str, dtype: &ValueType) -> Result<Vec<i64>> {
        match dtype {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape,
                ..
            } => Ok(shape.to_vec()),
            other => {
                Err(self.contract_error(format!("{name:?} is {other}, expected a float32 tensor")))
            }
        }
    }

    /// Runs the model on `input` [S, 3, H, W] and returns its outputs without the batch dimension.
    pub fn run(&mut self, input: &Array4<f32>) -> Result<RawOutputs> {
        let infer =
            |message: String, source: Option<ort::Error>| Error::Inference { message, source };
        let tensor = TensorRef::from_array_view(input.view())
            .map_err(|e| infer("building the input tensor".into(), Some(e)))?;
        let mut outputs = self
            .session
            .run(ort::inputs![self.io.input_images.as_str() => tensor])
            .map_err(|e| infer(format!("running {:?}", self.path), Some(e)))?;
        // Each output is copied out and its ONNX Runtime buffer released before the next, so the
        // peak holds one output twice, not all six.
        let mut take = |name: &str| -> Result<ArrayD<f32>> {
            let value = outputs
                .remove(name)
                .ok_or_else(|| infer(format!("output {name:?} missing from the results"), None))?;
            let view = value
                .try_extract_array::<f32>()
                .map_err(|e| infer(format!("reading output {name:?}"), Some(e)))?;
            if view.ndim() == 0 || view.shape()[0] != 1 {
                return Err(infer(
                    format!(
                        "output {name:?} has shape {:?}, expected a leading batch of 1",
                        view.shape()
                    ),
                    None,
                ));
            }
            Ok(view
                .index_axis(Axis(0), 0)
                .as_standard_layout()
                .into_owned())
        };
        fn dim<D: Dimension>(name: &str, a: ArrayD<f32>) -> Result<ndarray::Array<f32, D>> {
            let shape = a.shape().to_vec();
            a.into_dimensionality::<D>().map_err(|_| Error::Inference {
                message: format!(
                    "output {name:?} has shape {shape:?} (batch removed), of the wrong rank"
                ),
                source: None,
            })
        }
        let io = &self.io;
        Ok(RawOutputs {
            pose_enc: dim::<Ix2>(&io.pose_enc, take(&io.pose_enc)?)?,
            depth: dim::<Ix4>(&io.depth, take(&io.depth)?)?,
            depth_conf: dim::<Ix3>(&io.depth_conf, take(&io.depth_conf)?)?,
            world_points: dim::<Ix4>(&io.world_points, take(&io.world_points)?)?,
            world_points_conf: dim::<Ix3>(&io.world_points_conf, take(&io.world_points_conf)?)?,
            // Packed to bytes after the float copy is made and ONNX Runtime's buffer released:
            // no higher than the copy's own peak.
            images: dim::<Ix4>(&io.images, take(&io.images)?)?.into(),
        })
    }
}

/// Names the missing external weight file when that is why ONNX Runtime refused the model.
fn classify_load_error(path: &Path, source: ort::Error) -> Error {
    let msg = source.message().to_ascii_lowercase();
    if msg.contains("external data")
        || msg.contains("cannot get file size")
        || msg.contains("onnx_data")
    {
        let mut expected = path.as_os_str().to_owned();
        expected.push("_data");
        return Error::MissingExternalData {
            path: path.to_owned(),
            expected: PathBuf::from(expected),
            source,
        };
    }
    Error::ModelLoad {
        path: path.to_owned(),
        source,
    }
}

/// Registers the configured execution provider. A GPU provider must come up (`error_on_failure`);
/// the CPU provider is ONNX Runtime's own and needs no registration.
fn with_provider(builder: SessionBuilder, cfg: &ModelConfig) -> Result<SessionBuilder> {
    let provider_error = |source: ort::Error| Error::Provider {
        provider: cfg.provider.as_str(),
        source,
    };
    match cfg.provider {
        Provider::Cpu => {
            tracing::info!(
                threads = cfg.intra_threads,
                arena = cfg.cpu_arena,
                "inference runs on the CPU (provider \"cpu\" configured; no GPU provider registered)"
            );
            let builder = builder
                .with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(cfg.cpu_arena)
                    .build()])
                .map_err(|e| provider_error(e.into()))?;
            if cfg.intra_threads > 0 {
                return builder
                    .with_intra_threads(cfg.intra_threads)
                    .map_err(|e| provider_error(e.into()));
            }
            Ok(builder)
        }
        #[cfg(feature = "cuda")]
        Provider::Cuda => builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| provider_error(e.into())),
        #[cfg(feature = "tensorrt")]
        Provider::TensorRt => builder
            .with_execution_providers([
                ort::ep::TensorRT::default().build().error_on_failure(),
                ort::ep::CUDA::default().build().error_on_failure(),
            ])
            .map_err(|e| provider_error(e.into())),
        #[allow(unreachable_patterns)]
        other => Err(provider_error(ort::Error::new(format!(
            "this build has no `{}` cargo feature; rebuild spaceport-onnx with --features {0} or configure provider \"cpu\"",
            other.as_str()
        )))),
    }
}
