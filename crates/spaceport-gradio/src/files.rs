//! Files between us and a Space, in the shapes each protocol wants (gradio-protocol-legacy.md §4):
//! inputs uploaded to `{prefix}/upload` and sent as `FileData` (4.x+) or `{name, data, is_file}`
//! (3.x), or inlined as base64 data URLs where 3.x accepts nothing else (an Image); outputs read
//! back from `/file=` or decoded from the data URLs 3.x returns inline.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use spaceport_core::pipeline::{Arg, CallSpec, FileForm};
use spaceport_core::ports::JobInput;
use spaceport_core::{Error, ErrorCode};

use crate::client::{Cookies, GradioClient};
use crate::config::SpaceConfig;
use crate::protocol::{Protocol, protocol_error};

/// One input file as the Space will receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentFile {
    /// As a file component takes it.
    pub file: Value,
    /// As an Image component takes it (the same `FileData` on 4.x+; a data URL on 3.x, only
    /// for slots that were inlined).
    pub image: Value,
}

/// Every slot's files, as sent.
pub type Sent = BTreeMap<String, Vec<SentFile>>;

/// A file as Gradio 4.x+'s `FileData`.
pub fn file_data(path: &str, name: &str, mime: &str, size: u64) -> Value {
    json!({
        "path": path,
        "url": null,
        "orig_name": name,
        "mime_type": mime,
        "size": size,
        "is_stream": false,
        "meta": {"_type": "gradio.FileData"},
    })
}

/// `bytes` as a base64 data URL.
pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Sends every slot: inlined when a 3.x Image takes it, else uploaded in one request per slot.
pub(crate) async fn send_inputs(
    client: &GradioClient,
    config: &SpaceConfig,
    calls: &[CallSpec],
    inputs: BTreeMap<String, Vec<JobInput>>,
    cookies: &Cookies,
) -> Result<Sent, Error> {
    let protocol = config.protocol;
    let inline = |slot: &str| {
        protocol.is_3x()
            && calls
                .iter()
                .flat_map(CallSpec::args)
                .any(|a| matches!(a, Arg::Input { slot: s, form: FileForm::Image } if s == slot))
    };
    let mut sent = Sent::new();
    for (slot, files) in inputs {
        let mut list = vec![];
        if inline(&slot) {
            for f in files {
                let bytes = read_all(f.body, f.size, &slot).await?;
                let url = data_url(&f.content_type, &bytes);
                list.push(SentFile {
                    file: json!({"name": f.filename, "data": url, "is_file": false, "orig_name": f.filename}),
                    image: Value::String(url),
                });
            }
        } else if !files.is_empty() {
            let described: Vec<(String, String, u64)> = files
                .iter()
                .map(|f| (f.filename.clone(), f.content_type.clone(), f.size))
                .collect();
            let paths = client.upload(&config.api_prefix, files, cookies).await?;
            for (path, (name, mime, size)) in paths.iter().zip(&described) {
                let file = if protocol.is_3x() {
                    json!({"name": path, "data": null, "is_file": true, "orig_name": name, "size": size})
                } else {
                    file_data(path, name, mime, *size)
                };
                list.push(SentFile {
                    image: if protocol.is_3x() {
                        Value::Null
                    } else {
                        file.clone()
                    },
                    file,
                });
            }
        }
        sent.insert(slot, list);
    }
    Ok(sent)
}

/// Reads an input whole (a 3.x Image travels inline), refusing more than it declared.
async fn read_all(
    mut body: spaceport_core::ports::ByteStream,
    size: u64,
    slot: &str,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::storage(format!("reading input slot {slot}"), e))?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > size {
            return Err(Error::Internal(format!(
                "input slot {slot}: more bytes than the {size} recorded"
            )));
        }
    }
    Ok(buf)
}

/// A slot's files shaped for one component.
fn shape(
    form: FileForm,
    files: &[SentFile],
    slot: &str,
    protocol: Protocol,
) -> Result<Value, Error> {
    let first = || {
        files
            .first()
            .ok_or_else(|| Error::validation(slot, format!("input slot {slot:?} has no file")))
    };
    let not_on_3x = |what: &str| {
        protocol_error(format!(
            "input slot {slot:?} is sent as {what}, which Gradio 3.x does not take"
        ))
    };
    Ok(match form {
        FileForm::Files => Value::Array(files.iter().map(|f| f.file.clone()).collect()),
        FileForm::File => first()?.file.clone(),
        FileForm::Image => first()?.image.clone(),
        FileForm::Gallery if protocol.is_3x() => return Err(not_on_3x("a Gallery")),
        FileForm::Gallery => Value::Array(
            files
                .iter()
                .map(|f| json!({"image": f.file, "caption": null}))
                .collect(),
        ),
        FileForm::Editor if protocol.is_3x() => return Err(not_on_3x("an ImageEditor")),
        FileForm::Editor => json!({"background": first()?.file, "layers": [], "composite": null}),
    })
}

/// Resolves one call's positional arguments.
pub(crate) fn build_args(
    args: &[Arg],
    job_settings: &Map<String, Value>,
    sent: &Sent,
    outputs: &[Vec<Value>],
    protocol: Protocol,
) -> Result<Vec<Value>, Error> {
    args.iter()
        .map(|arg| match arg {
            Arg::Input { slot, form } => {
                let files = sent.get(slot).ok_or_else(|| {
                    Error::validation(slot.as_str(), format!("no input slot {slot:?} in the job"))
                })?;
                shape(*form, files, slot, protocol)
            }
            Arg::Setting(name) => job_settings.get(name).cloned().ok_or_else(|| {
                Error::validation(name.as_str(), format!("setting {name:?} has no value"))
            }),
            Arg::Value(v) => Ok(v.clone()),
            Arg::Output(r) => {
                let out = outputs.get(r.call).ok_or_else(|| {
                    Error::Internal(format!(
                        "call {} has not run before its output is used",
                        r.call
                    ))
                })?;
                let v = out.get(r.index).ok_or_else(|| {
                    protocol_error(format!(
                        "call {} returned no output {} (the Space's API changed?)",
                        r.call, r.index
                    ))
                })?;
                match r.item {
                    None => Ok(v.clone()),
                    Some(i) => v.as_array().and_then(|a| a.get(i)).cloned().ok_or_else(|| {
                        protocol_error(format!(
                            "call {} output {} has no item {i}",
                            r.call, r.index
                        ))
                    }),
                }
            }
        })
        .collect()
}

/// Where an output file's bytes are.
#[derive(Debug, PartialEq)]
pub enum OutputFile {
    /// In the message itself (3.x images, 3.x files with `data`).
    Inline { bytes: Bytes, mime: Option<String> },
    /// At `{prefix}/file={path}`.
    Served { path: String, mime: Option<String> },
}

/// Reads an output value: `FileData` (`path`), 3.x `{name, data, is_file}`, a data URL, or a
/// Gallery item (`{image, caption}` on 4.x+, `[file, caption]` on 3.x).
pub fn output_file(v: &Value) -> Result<OutputFile, Error> {
    let bad = || protocol_error(format!("an output that is not a file: {v:.200}"));
    match v {
        Value::String(s) if s.starts_with("data:") => decode_data_url(s),
        Value::String(s) => Ok(OutputFile::Served {
            path: s.clone(),
            mime: None,
        }),
        Value::Array(pair) if !pair.is_empty() => output_file(&pair[0]),
        Value::Object(o) => {
            if let Some(Value::String(d)) = o.get("data")
                && d.starts_with("data:")
            {
                return decode_data_url(d);
            }
            let mime = o
                .get("mime_type")
                .and_then(Value::as_str)
                .map(str::to_string);
            match (o.get("path"), o.get("name"), o.get("image")) {
                (Some(Value::String(p)), _, _) | (None, Some(Value::String(p)), _) => {
                    Ok(OutputFile::Served {
                        path: p.clone(),
                        mime,
                    })
                }
                (None, None, Some(image)) => output_file(image),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

fn decode_data_url(s: &str) -> Result<OutputFile, Error> {
    let bad = |why: &str| {
        Error::upstream(
            ErrorCode::SpaceProtocol,
            false,
            format!("an inline output is not a base64 data URL ({why}): {s:.80}"),
        )
    };
    let rest = s
        .strip_prefix("data:")
        .ok_or_else(|| bad("no data: prefix"))?;
    let (meta, payload) = rest.split_once(',').ok_or_else(|| bad("no comma"))?;
    let mime = meta
        .strip_suffix(";base64")
        .ok_or_else(|| bad("not base64"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| bad(&e.to_string()))?;
    Ok(OutputFile::Inline {
        bytes: Bytes::from(bytes),
        mime: (!mime.is_empty()).then(|| mime.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_core::pipeline::OutputRef;

    fn sent_one(protocol: Protocol) -> (Sent, SentFile) {
        let f = if protocol.is_3x() {
            SentFile {
                file: json!({"name": "a.png", "data": "data:image/png;base64,AA==", "is_file": false, "orig_name": "a.png"}),
                image: json!("data:image/png;base64,AA=="),
            }
        } else {
            let fd = file_data("/tmp/a.png", "a.png", "image/png", 3);
            SentFile {
                file: fd.clone(),
                image: fd,
            }
        };
        ([("images".to_string(), vec![f.clone()])].into(), f)
    }

    #[test]
    fn arguments_are_built_from_every_source() {
        let (sent, f) = sent_one(Protocol::SseV3);
        let fd = f.file.clone();
        let settings = json!({"conf_thres": 42}).as_object().unwrap().clone();
        let outputs = vec![vec![
            Value::Null,
            json!("input_images_1"),
            json!(["a", "b"]),
        ]];
        let input = |form| Arg::Input {
            slot: "images".into(),
            form,
        };
        let args = [
            Arg::Output(OutputRef {
                call: 0,
                index: 1,
                item: None,
            }),
            Arg::Output(OutputRef {
                call: 0,
                index: 2,
                item: Some(1),
            }),
            Arg::Setting("conf_thres".into()),
            Arg::Value(json!("All")),
            Arg::Value(Value::Null),
            input(FileForm::Files),
            input(FileForm::File),
            input(FileForm::Gallery),
            input(FileForm::Image),
            input(FileForm::Editor),
        ];
        let got = build_args(&args, &settings, &sent, &outputs, Protocol::SseV3).unwrap();
        assert_eq!(
            got,
            vec![
                json!("input_images_1"),
                json!("b"),
                json!(42),
                json!("All"),
                Value::Null,
                json!([fd.clone()]),
                fd.clone(),
                json!([{"image": fd, "caption": null}]),
                fd.clone(),
                json!({"background": fd, "layers": [], "composite": null}),
            ]
        );
        assert_eq!(fd["meta"]["_type"], "gradio.FileData");
    }

    #[test]
    fn on_3x_an_image_is_a_data_url_and_gallery_or_editor_inputs_are_refused() {
        let (sent, f) = sent_one(Protocol::Ws);
        let settings = Map::new();
        let input = |form| Arg::Input {
            slot: "images".into(),
            form,
        };
        let got = build_args(
            &[input(FileForm::Image), input(FileForm::File)],
            &settings,
            &sent,
            &[],
            Protocol::Ws,
        )
        .unwrap();
        assert_eq!(got, vec![f.image.clone(), f.file.clone()]);
        for form in [FileForm::Gallery, FileForm::Editor] {
            let e = build_args(&[input(form)], &settings, &sent, &[], Protocol::Ws).unwrap_err();
            assert!(e.to_string().contains("Gradio 3.x"), "{e}");
        }
    }

    #[test]
    fn missing_sources_are_errors() {
        let none = Sent::new();
        let empty = Map::new();
        let p = Protocol::SseV3;
        assert!(build_args(&[Arg::Setting("x".into())], &empty, &none, &[], p).is_err());
        let out = |index, item| {
            Arg::Output(OutputRef {
                call: 0,
                index,
                item,
            })
        };
        assert!(build_args(&[out(0, None)], &empty, &none, &[], p).is_err());
        assert!(build_args(&[out(5, None)], &empty, &none, &[vec![json!(1)]], p).is_err());
        assert!(build_args(&[out(0, Some(3))], &empty, &none, &[vec![json!([1])]], p).is_err());
    }

    #[test]
    fn outputs_are_read_in_every_shape() {
        let served = |p: &str, m: Option<&str>| OutputFile::Served {
            path: p.into(),
            mime: m.map(str::to_string),
        };
        let png = data_url("image/png", b"\x89PNG");
        let inline = OutputFile::Inline {
            bytes: Bytes::from_static(b"\x89PNG"),
            mime: Some("image/png".into()),
        };
        let fd = file_data("/tmp/g/out.webp", "out.webp", "image/webp", 9);
        assert_eq!(
            output_file(&fd).unwrap(),
            served("/tmp/g/out.webp", Some("image/webp"))
        );
        assert_eq!(
            output_file(&json!({"name": "/tmp/x/r.txt", "data": null, "is_file": true})).unwrap(),
            served("/tmp/x/r.txt", None)
        );
        assert_eq!(output_file(&json!(png)).unwrap(), inline);
        assert_eq!(
            output_file(&json!({"name": "v.png", "data": png, "is_file": false})).unwrap(),
            inline
        );
        assert_eq!(
            output_file(&json!({"image": fd, "caption": null})).unwrap(),
            served("/tmp/g/out.webp", Some("image/webp"))
        );
        assert_eq!(
            output_file(&json!([{"name": "/tmp/v0.png", "data": null, "is_file": true}, "view 0"]))
                .unwrap(),
            served("/tmp/v0.png", None)
        );
        for bad in [json!(3), json!({"x": 1}), json!("data:image/png,notbase64")] {
            assert!(output_file(&bad).is_err(), "{bad}");
        }
    }
}
