//! A create request's declared files, checked against the pipeline's input slots: count, filename,
//! content type and size, so nothing that cannot run is ever stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::Pipeline;
use crate::error::Error;

/// A declared input file of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredFile {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

/// Checks a client-supplied filename: a plain name, no path, no control characters.
pub fn check_filename(field: &str, name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::validation(
            field,
            format!("filename {name:?} is not allowed: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains a control character (NUL, newline …)");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name == "." || name == ".." || name.contains("..") {
        return bad("it contains '..'");
    }
    Ok(())
}

impl Pipeline {
    /// Checks the declared files of a create request against the input slots.
    pub fn check_inputs(
        &self,
        declared: &BTreeMap<String, Vec<DeclaredFile>>,
    ) -> Result<(), Error> {
        for slot in declared.keys() {
            if !self.inputs.contains_key(slot) {
                return Err(Error::validation(
                    format!("inputs.{slot}"),
                    format!("pipeline {:?} has no input slot {slot:?}", self.name),
                ));
            }
        }
        for (slot, spec) in &self.inputs {
            let files = declared.get(slot).map(Vec::as_slice).unwrap_or(&[]);
            let field = format!("inputs.{slot}");
            if files.len() < spec.min || files.len() > spec.max {
                return Err(Error::validation(
                    field,
                    format!(
                        "{} file(s) given; {slot} takes {} to {}",
                        files.len(),
                        spec.min,
                        spec.max
                    ),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, f) in files.iter().enumerate() {
                let ff = format!("{field}[{i}]");
                check_filename(&format!("{ff}.filename"), &f.filename)?;
                if !seen.insert(f.filename.as_str()) {
                    return Err(Error::validation(
                        format!("{ff}.filename"),
                        format!("filename {:?} appears twice", f.filename),
                    ));
                }
                if !spec.content_types.iter().any(|t| t == &f.content_type) {
                    return Err(Error::UnsupportedMediaType {
                        field: Some(format!("{ff}.content_type")),
                        message: format!(
                            "content type {:?} is not accepted; use one of {}",
                            f.content_type,
                            spec.content_types.join(", ")
                        ),
                    });
                }
                if f.size == 0 {
                    return Err(Error::validation(
                        format!("{ff}.size"),
                        "size must be positive",
                    ));
                }
                if f.size > spec.max_bytes {
                    return Err(Error::PayloadTooLarge {
                        field: Some(format!("{ff}.size")),
                        message: format!(
                            "{} bytes declared; the limit is {} bytes",
                            f.size, spec.max_bytes
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}
