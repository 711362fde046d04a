//! The crate's error type. Each variant says whose fault it is: the user's input (a run fails with
//! `input_invalid`), the model or runtime (`model_error`), or the local disk (retryable).

use std::path::PathBuf;

use spaceport_core::ErrorCode;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while loading a model or reconstructing a scene.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No images were given.
    #[error("at least one image is required")]
    NoImages,
    /// More frames than the configured limit (`max_frames`, sized from memory).
    #[error("{given} images given, but this model runs at most {max} frames at once")]
    TooManyFrames { given: usize, max: usize },
    /// An image that cannot be read or decoded.
    #[error("image {name:?} cannot be decoded: {source}")]
    BadImage {
        name: String,
        #[source]
        source: image::ImageError,
    },
    /// An image file that cannot be read from disk.
    #[error("image {name:?} cannot be read: {source}")]
    ImageIo {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A `predictions.npz` given to re-render that is not one a run of ours wrote (a missing
    /// key, a wrong shape or dtype, not a zip).
    #[error("predictions {name:?}: {message}")]
    BadPredictions { name: String, message: String },
    /// A setting outside its allowed range.
    #[error("setting {name}: {message}")]
    BadSetting { name: &'static str, message: String },
    /// The model configuration (the pipeline file's `backend`) is invalid.
    #[error("model configuration: {0}")]
    Config(String),
    /// ONNX Runtime itself could not be loaded (`ORT_DYLIB_PATH`, the shared library).
    #[error("ONNX Runtime could not be loaded from {path:?}: {message}")]
    Runtime {
        path: Option<PathBuf>,
        message: String,
    },
    /// The model file is missing or ONNX Runtime refused it.
    #[error("model {path:?} could not be loaded: {source}")]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    /// The model references an external weight file (`x.onnx_data`) that is not there.
    #[error(
        "model {path:?} references an external weight file that is missing or unreadable \
         (it must sit beside the model, e.g. {expected:?}): {source}"
    )]
    MissingExternalData {
        path: PathBuf,
        expected: PathBuf,
        #[source]
        source: ort::Error,
    },
    /// A GPU execution provider was asked for but could not be registered.
    #[error("execution provider {provider} could not be registered: {source}")]
    Provider {
        provider: &'static str,
        #[source]
        source: ort::Error,
    },
    /// The model's inputs or outputs do not match the contract (names, ranks, element types).
    #[error("model {path:?} does not match the VGGT ONNX contract: {message}")]
    Contract { path: PathBuf, message: String },
    /// Inference failed, or its outputs had unexpected shapes.
    #[error("inference failed: {message}")]
    Inference {
        message: String,
        #[source]
        source: Option<ort::Error>,
    },
    /// Writing an artifact failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the .npz failed.
    #[error("writing {path:?}: {source}")]
    Npz {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// The run's `error.code` when a reconstruction fails with this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NoImages
            | Error::TooManyFrames { .. }
            | Error::BadImage { .. }
            | Error::ImageIo { .. }
            | Error::BadSetting { .. }
            | Error::BadPredictions { .. } => ErrorCode::InputInvalid,
            Error::Config(_)
            | Error::Runtime { .. }
            | Error::ModelLoad { .. }
            | Error::MissingExternalData { .. }
            | Error::Provider { .. }
            | Error::Contract { .. }
            | Error::Inference { .. } => ErrorCode::ModelError,
            Error::Io { .. } | Error::Npz { .. } => ErrorCode::Internal,
        }
    }

    /// Whether the input (not the model or the machine) is at fault.
    pub fn is_input_error(&self) -> bool {
        self.code() == ErrorCode::InputInvalid
    }

    /// Whether trying the same run again later can succeed (disk trouble only; a bad input or a
    /// broken model stays broken).
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Npz { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for spaceport_core::Error {
    fn from(e: Error) -> Self {
        let (code, retryable) = (e.code(), e.retryable());
        spaceport_core::Error::Upstream {
            code,
            retryable,
            message: e.to_string(),
            retry_after: None,
        }
    }
}
