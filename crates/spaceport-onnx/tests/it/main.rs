//! Integration suite for spaceport-onnx against its real peers: ONNX Runtime from the
//! `onnxruntime` wheel, PIL and numpy in the project venv, and the Khronos glTF validator.

mod bad_inputs;
mod end_to_end;
mod postprocess;
mod preprocess_vs_pil;
mod support;
