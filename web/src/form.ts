// The new-run form: a pipeline's settings form generated from its JSON Schema, its input slots
// as drop zones, and the create → upload flow with a progress bar per file.

import { ApiError, api, upload } from "./api";
import { bytes, h } from "./dom";

export interface Pipeline {
  name: string;
  title?: string;
  description?: string;
  backend: { kind: string; [k: string]: unknown };
  inputs: Record<string, { min: number; max: number; content_types: string[]; max_bytes: number }>;
  settings: { properties?: Record<string, any>; required?: string[] };
  outputs: Record<string, { content_type: string; filename?: string }>;
}

/** The files chosen for a run, kept so the run page can show the inputs beside the result. */
export const chosenInputs = new Map<string, Record<string, File[]>>();

const EXT_TYPES: Record<string, string> = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", webp: "image/webp", gif: "image/gif",
  bmp: "image/bmp", tif: "image/tiff", tiff: "image/tiff", heic: "image/heic", glb: "model/gltf-binary",
  npz: "application/octet-stream", mp4: "video/mp4",
};

function contentType(f: File): string {
  if (f.type) return f.type;
  return EXT_TYPES[f.name.split(".").pop()?.toLowerCase() ?? ""] ?? "application/octet-stream";
}

interface SettingField {
  name: string;
  read(): unknown;
}

function settingField(name: string, s: any, required: boolean): [HTMLElement, SettingField] {
  const id = `setting-${name}`;
  const help = s.description ? h("p", { class: "help", id: `${id}-help` }, s.description) : null;
  const describedBy = help ? `${id}-help ${id}-error` : `${id}-error`;
  const wrap = h("div", { class: "field", "data-field": `settings.${name}` });
  const label = h("label", { for: id }, s.title ?? name, required ? " *" : "");
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  let read: () => unknown;
  if (Array.isArray(s.enum)) {
    const select = h("select", { id, name, "aria-describedby": describedBy },
      ...s.enum.map((v: unknown) => h("option", { value: String(v), selected: v === s.default }, String(v))));
    read = () => {
      const v = select.value;
      const hit = s.enum.find((e: unknown) => String(e) === v);
      return hit === undefined ? v : hit;
    };
    wrap.append(label, help ?? "", select);
  } else if (s.type === "boolean") {
    const box = h("input", { type: "checkbox", id, name, checked: s.default === true, "aria-describedby": describedBy });
    read = () => box.checked;
    wrap.append(h("label", { class: "check", for: id }, box, s.title ?? name), help ?? "");
  } else if (s.type === "number" || s.type === "integer") {
    const step = s.type === "integer" ? "1" : "any";
    const num = h("input", {
      type: "number", id, name, step, value: s.default ?? "", "aria-describedby": describedBy,
      inputmode: s.type === "integer" ? "numeric" : "decimal",
    });
    if (typeof s.minimum === "number" && typeof s.maximum === "number") {
      // A range as a slider, with the number box beside it for an exact value; the server
      // judges the value (its message is shown here), so neither control clamps.
      const sliderStep = s.type === "integer" ? 1 : (s.maximum - s.minimum) / 100;
      const slider = h("input", {
        type: "range", min: s.minimum, max: s.maximum, step: sliderStep, value: s.default ?? s.minimum,
        "aria-label": `${s.title ?? name} slider`, tabindex: 0,
      });
      slider.addEventListener("input", () => (num.value = slider.value));
      num.addEventListener("input", () => {
        if (num.value !== "") slider.value = num.value;
      });
      wrap.append(label, help ?? "", h("div", { class: "range" }, slider, num));
    } else {
      wrap.append(label, help ?? "", num);
    }
    read = () => (num.value === "" ? undefined : Number(num.value));
  } else {
    const text = h("input", { type: "text", id, name, value: s.default ?? "", maxlength: s.maxLength, "aria-describedby": describedBy });
    read = () => (text.value === "" && s.default === undefined ? undefined : text.value);
    wrap.append(label, help ?? "", text);
  }
  wrap.append(error);
  return [wrap, { name, read }];
}

interface Slot {
  name: string;
  files: File[];
  bars: HTMLProgressElement[];
}

function slotField(name: string, spec: Pipeline["inputs"][string], slot: Slot): HTMLElement {
  const id = `input-${name}`;
  const list = h("ul", { class: "files", "aria-label": `${name} files` });
  const count = spec.min === spec.max ? `${spec.min}` : `${spec.min} to ${spec.max}`;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const picker = h("input", {
    type: "file", id, name, multiple: spec.max > 1, accept: spec.content_types.join(","),
    "aria-describedby": `${id}-help ${id}-error`,
  });
  const zone = h("div", { class: "drop" },
    h("span", {}, "Drop images here, or choose them"), picker);
  const render = () => {
    list.replaceChildren();
    slot.bars = [];
    slot.files.forEach((f, i) => {
      const bar = h("progress", { max: 1, value: 0, "aria-label": `upload of ${f.name}` });
      slot.bars.push(bar);
      const thumb = f.type.startsWith("image/") ? h("img", { src: URL.createObjectURL(f), alt: "" }) : h("span", {});
      list.append(h("li", { "data-file": f.name }, thumb,
        h("div", {}, h("div", { class: "name" }, f.name, " ", h("span", { class: "muted" }, bytes(f.size))), bar),
        h("button", { type: "button", class: "quiet", "aria-label": `Remove ${f.name}`, onclick: () => {
          slot.files.splice(i, 1);
          render();
        } }, "Remove")));
    });
  };
  const add = (files: FileList | File[]) => {
    slot.files.push(...Array.from(files));
    if (spec.max >= 1 && slot.files.length > spec.max) slot.files.splice(0, slot.files.length - spec.max);
    render();
  };
  picker.addEventListener("change", () => {
    if (picker.files) add(picker.files);
    picker.value = "";
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer?.files) add(e.dataTransfer.files);
  });
  return h("div", { class: "field", "data-field": `inputs.${name}` },
    h("label", { for: id }, name),
    h("p", { class: "help", id: `${id}-help` }, `${count} file(s): ${spec.content_types.join(", ")}, up to ${bytes(spec.max_bytes)} each`),
    zone, list, error);
}

/** Shows the server's message at the field it names (`settings.conf_thres`, `inputs.images[1]`). */
function showFieldError(form: HTMLElement, err: ApiError): boolean {
  const named = err.field;
  if (!named) return false;
  // `inputs.images[2].content_type` is shown at the `inputs.images` slot.
  const field = [...form.querySelectorAll<HTMLElement>("[data-field]")].find((f) => {
    const path = f.dataset.field!;
    return named === path || (named.startsWith(path) && ".[".includes(named[path.length]));
  });
  if (!field) return false;
  field.classList.add("invalid");
  const p = field.querySelector<HTMLElement>(".field-error")!;
  p.textContent = err.message;
  p.hidden = false;
  field.querySelector<HTMLElement>("input, select")?.focus();
  return true;
}

/** The new-run page: pick a pipeline, fill its form, drop the files, create and upload. */
export async function newRunPage(main: HTMLElement, go: (hash: string) => void): Promise<void> {
  const { pipelines } = await api<{ pipelines: Pipeline[] }>("/v1/pipelines");
  const wanted = new URLSearchParams(location.hash.split("?")[1] ?? "").get("pipeline");
  const picker = h("select", { id: "pipeline" },
    ...pipelines.map((p) => h("option", { value: p.name, selected: p.name === wanted }, p.title ? `${p.title} (${p.name})` : p.name)));
  const body = h("div", {});
  main.replaceChildren(h("h1", {}, "New run"),
    h("div", { class: "panel" }, h("label", { for: "pipeline" }, "Pipeline"), picker, body));
  const show = () => {
    const p = pipelines.find((x) => x.name === picker.value)!;
    body.replaceChildren(pipelineForm(p, go));
  };
  picker.addEventListener("change", show);
  show();
}

function pipelineForm(p: Pipeline, go: (hash: string) => void): HTMLElement {
  const props = p.settings.properties ?? {};
  const required = new Set(p.settings.required ?? []);
  const fields: SettingField[] = [];
  const settingsBox = h("fieldset", { class: "settings" }, h("legend", {}, "Settings"));
  for (const [name, s] of Object.entries(props)) {
    const [el, f] = settingField(name, s, required.has(name));
    fields.push(f);
    settingsBox.append(el);
  }
  const slots: Slot[] = Object.keys(p.inputs).map((name) => ({ name, files: [], bars: [] }));
  const inputsBox = h("fieldset", { class: "inputs" }, h("legend", {}, "Inputs"),
    ...slots.map((s) => slotField(s.name, p.inputs[s.name], s)));
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Run");
  const outputs = Object.entries(p.outputs).map(([n, o]) => `${n} (${o.content_type})`).join(", ");
  const form = h("form", { novalidate: true, "aria-label": `New ${p.name} run` },
    p.description ? h("p", { class: "muted" }, p.description) : null,
    h("p", { class: "muted" }, `Backend: ${p.backend.kind}. Gives: ${outputs || "outputs"}.`),
    h("div", { class: "grid" }, inputsBox, settingsBox),
    h("div", { class: "actions" }, submit), status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    form.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
    form.querySelectorAll<HTMLElement>(".field-error").forEach((f) => (f.hidden = true));
    const settings: Record<string, unknown> = {};
    for (const f of fields) {
      const v = f.read();
      if (v !== undefined) settings[f.name] = v;
    }
    const inputs: Record<string, unknown[]> = {};
    for (const s of slots) {
      inputs[s.name] = s.files.map((f) => ({ filename: f.name, content_type: contentType(f), size: f.size }));
    }
    submit.disabled = true;
    status.textContent = "Creating the run…";
    let created: string | null = null;
    try {
      const run = await api<any>("/v1/runs", { method: "POST", body: { pipeline: p.name, settings, inputs } });
      created = run.id;
      chosenInputs.set(run.id, Object.fromEntries(slots.map((s) => [s.name, s.files])));
      status.textContent = `Uploading ${run.uploads?.length ?? 0} file(s)…`;
      await Promise.all((run.uploads ?? []).map((u: any) => {
        const slot = slots.find((s) => s.name === u.slot)!;
        const file = slot.files[u.index];
        return upload(u, file, contentType(file), (f) => (slot.bars[u.index].value = f));
      }));
      go(`#/runs/${run.id}`);
    } catch (err) {
      submit.disabled = false;
      if (created) {
        status.replaceChildren(`Run ${created} was created but an upload failed: ${(err as Error).message}. `,
          h("a", { href: `#/runs/${created}` }, "Open the run"));
      } else if (err instanceof ApiError && showFieldError(form, err)) {
        status.textContent = "The run was not created: see the marked field.";
      } else {
        status.textContent = `The run was not created: ${(err as Error).message}`;
      }
    }
  });
  return form;
}
