//! Re-rendering a VGGT scene from its saved predictions (the Space's `update_visualization`):
//! the same filters and GLB writer a reconstruction uses, on a `predictions.npz` a run wrote,
//! with new settings and the Space's `frame_filter` ("All", or one frame: "3" or "3: name.png").
//! No model is loaded: a 10-frame scene takes a fraction of a second.

use std::path::Path;

use serde_json::Value;

use crate::config::ReconSettings;
use crate::error::{Error, Result};
use crate::glb::{GlbStats, write_glb};
use crate::predictions::Predictions;

/// The frame `frame_filter` keeps: `None` for all of them.
pub fn frame_filter(settings: &Value) -> Result<Option<usize>> {
    let bad = |message: String| Error::BadSetting {
        name: "frame_filter",
        message,
    };
    match settings.get("frame_filter") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim() == "All" => Ok(None),
        Some(Value::String(s)) => s
            .split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{s:?} is neither \"All\" nor a frame number"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| bad(format!("{n} is not a frame number"))),
        Some(other) => Err(bad(format!(
            "{other} is neither \"All\" nor a frame number"
        ))),
    }
}

/// Builds the GLB of `npz` (a `predictions.npz`, named `name` in errors) with `settings`,
/// keeping only `frame` when given, and writes it to `out`.
pub fn render(
    name: &str,
    npz: &[u8],
    settings: &ReconSettings,
    frame: Option<usize>,
    out: &Path,
) -> Result<GlbStats> {
    let pred = Predictions::read_npz(name, npz)?;
    let pred = match frame {
        None => pred,
        Some(f) if f < pred.frames() => pred.frame(f),
        Some(f) => {
            return Err(Error::BadSetting {
                name: "frame_filter",
                message: format!("frame {f} is not one of the {} frames", pred.frames()),
            });
        }
    };
    write_glb(&pred, settings, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_frame_filter_takes_the_spaces_spellings() {
        assert_eq!(frame_filter(&json!({})).unwrap(), None);
        assert_eq!(frame_filter(&json!({"frame_filter": "All"})).unwrap(), None);
        assert_eq!(
            frame_filter(&json!({"frame_filter": "2"})).unwrap(),
            Some(2)
        );
        assert_eq!(
            frame_filter(&json!({"frame_filter": "3: view3.png"})).unwrap(),
            Some(3)
        );
        assert!(frame_filter(&json!({"frame_filter": "some"})).is_err());
        assert!(frame_filter(&json!({"frame_filter": -1})).is_err());
    }

    #[test]
    fn bytes_that_are_not_predictions_are_an_input_error() {
        let e = render(
            "p.npz",
            b"not a zip",
            &ReconSettings::default(),
            None,
            Path::new("/nonexistent/x.glb"),
        )
        .unwrap_err();
        assert!(e.is_input_error(), "{e}");
        assert!(e.to_string().contains("p.npz"), "{e}");
    }
}
