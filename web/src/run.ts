// One run's page: its status, queue rank and ETA, the backend's progress and logs and every
// attempt (fallbacks included) followed live over the run's events; cancel and retry; and the
// result: a 3D viewer for meshes and scenes, images inline (before/after for try-on), text
// outputs, and every artifact with its size and sha256.

import { api, followEvents } from "./api";
import { TERMINAL, bytes, h, seconds, statusBadge, when } from "./dom";
import { chosenInputs } from "./form";

const MESH = /\.(glb|gltf|obj|ply)$/i;

function isMesh(a: any): boolean {
  return a.content_type.startsWith("model/") || MESH.test(a.filename);
}

function progressLine(run: any): string {
  const p = run.progress ?? {};
  const parts: string[] = [];
  if (p.stage) parts.push(p.stage.replace(/_/g, " "));
  if (p.queue_rank != null) parts.push(`queue position ${p.queue_rank}${p.queue_size != null ? ` of ${p.queue_size}` : ""}`);
  if (p.eta_s != null) parts.push(`about ${seconds(p.eta_s)} left`);
  if (p.fraction != null) parts.push(`${Math.round(p.fraction * 100)}%`);
  if (p.message) parts.push(p.message);
  if (p.retry_at) parts.push(`trying again at ${when(p.retry_at)}`);
  return parts.join(" · ");
}

function attemptsTable(run: any): HTMLElement | null {
  const attempts: any[] = run.backend?.attempts ?? [];
  if (attempts.length === 0) return null;
  const fellBack = run.backend.pipeline !== run.pipeline;
  return h("div", { class: "table-wrap" },
    fellBack ? h("p", { class: "muted", "data-fallback": run.backend.pipeline }, `Fell back to ${run.backend.pipeline} (${run.backend.kind}).`) : null,
    h("table", { "aria-label": "Attempts" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Backend"), h("th", {}, "Pipeline"), h("th", {}, "Outcome"))),
      h("tbody", {}, ...attempts.map((a) => h("tr", {},
        h("td", {}, String(a.attempt)),
        h("td", {}, `${a.kind} ${a.target}`),
        h("td", {}, a.pipeline),
        h("td", {}, a.outcome ?? "running", a.message ? h("div", { class: "muted" }, a.message) : null))))));
}

function outputsBlock(outputs: Record<string, unknown>): HTMLElement | null {
  const entries = Object.entries(outputs ?? {});
  if (entries.length === 0) return null;
  return h("div", {}, h("h2", {}, "Outputs"),
    ...entries.map(([k, v]) => h("div", { class: "field", "data-output": k }, h("h3", { class: "muted" }, k),
      h("pre", { class: "text-output" }, typeof v === "string" ? v : JSON.stringify(v, null, 2)))));
}

function artifactsTable(run: any): HTMLElement {
  return h("div", { class: "table-wrap" }, h("table", { "aria-label": "Artifacts" },
    h("thead", {}, h("tr", {}, h("th", {}, "Artifact"), h("th", {}, "Size"), h("th", {}, "sha256"), h("th", {}, ""))),
    h("tbody", {}, ...run.artifacts.map((a: any) => h("tr", { "data-artifact": a.name },
      h("td", {}, h("strong", {}, a.name), h("div", { class: "muted" }, `${a.filename} · ${a.content_type}`),
        Object.keys(a.meta ?? {}).length ? h("div", { class: "muted mono" }, Object.entries(a.meta).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${v}`).join(", ")) : null),
      h("td", {}, bytes(a.size)),
      h("td", { class: "hash" }, a.sha256),
      h("td", {}, h("a", { href: a.url, download: a.filename }, "Download")))))));
}

/** Before/after for a try-on: the person as sent over the result; the slider shows more of one or the other. */
function compare(before: File, afterUrl: string): HTMLElement {
  const beforeImg = h("img", { src: URL.createObjectURL(before), alt: "Before: the photo sent" });
  const clip = h("div", { class: "before" }, beforeImg);
  const after = h("img", { src: afterUrl, alt: "After: the result", class: "after" });
  const slider = h("input", { type: "range", min: 0, max: 100, value: 50, "aria-label": "Before and after: how much of the photo sent to show" });
  const set = () => (clip.style.width = `${slider.value}%`);
  // The clipped photo keeps the frame's full width so the two line up.
  const fit = () => (beforeImg.style.width = `${after.clientWidth}px`);
  slider.addEventListener("input", set);
  after.addEventListener("load", fit);
  new ResizeObserver(fit).observe(after);
  set();
  return h("div", { class: "compare", "data-compare": "" }, h("div", { class: "frame" }, after, clip), slider);
}

async function resultBlock(run: any): Promise<HTMLElement> {
  const box = h("section", { "aria-labelledby": "result-title", class: "panel", id: "result" }, h("h2", { id: "result-title" }, "Result"));
  const meshes = run.artifacts.filter(isMesh);
  const images = run.artifacts.filter((a: any) => a.content_type.startsWith("image/"));
  if (meshes.length > 0) {
    const holder = h("div", { class: "viewer", "data-viewer": meshes[0].name });
    const pick = meshes.length > 1
      ? h("div", { class: "actions" }, ...meshes.map((m: any) => h("button", { type: "button", class: "quiet", onclick: () => show(m) }, `View ${m.filename}`)))
      : null;
    box.append(holder, pick ?? "");
    const { showModel } = await import(/* external */ "./viewer.js" as string);
    const show = (a: any) => {
      holder.setAttribute("data-viewer", a.name);
      showModel(holder, a.url, a.filename).catch((e: Error) => holder.replaceChildren(h("p", { class: "field-error" }, `Could not show ${a.filename}: ${e.message}`)));
    };
    show(meshes[0]);
  }
  const person = pickInput(run.id);
  for (const img of images) {
    box.append(h("figure", { "data-image": img.name },
      person ? compare(person, img.url) : h("img", { class: "result-image", src: img.url, alt: `${img.name} (${img.filename})` }),
      h("figcaption", { class: "muted" }, img.filename)));
  }
  const outs = outputsBlock(run.outputs);
  if (outs) box.append(outs);
  box.append(h("h2", {}, "Artifacts"), run.artifacts.length ? artifactsTable(run) : h("p", { class: "muted" }, "None."));
  return box;
}

/** The photo a try-on was given (the `person` slot, else the first), when this tab sent it. */
function pickInput(id: string): File | null {
  const inputs = chosenInputs.get(id);
  if (!inputs) return null;
  const slot = ["person", "human", "image", "images"].find((s) => inputs[s]?.length) ?? Object.keys(inputs)[0];
  return inputs[slot]?.[0] ?? null;
}

export async function runPage(main: HTMLElement, id: string, go: (hash: string) => void, signal: AbortSignal): Promise<void> {
  let run = await api<any>(`/v1/runs/${encodeURIComponent(id)}`);
  const badge = h("span", {});
  const bar = h("progress", { max: 1, "aria-label": "Progress" });
  const line = h("p", { id: "progress-line", "aria-live": "polite" });
  const facts = h("dl", { class: "facts" });
  const attempts = h("div", {});
  const errorBox = h("div", {});
  const logs = h("pre", { class: "logs", "aria-label": "Logs", tabindex: 0, hidden: true });
  const noLogs = h("p", { class: "muted" }, "No log lines yet.");
  const texts = h("div", {});
  const children = h("div", {});
  const result = h("div", {});
  const cancel = h("button", { type: "button", id: "cancel", onclick: async () => {
    cancel.disabled = true;
    try {
      run = await api(`/v1/runs/${id}/cancel`, { method: "POST" });
      paint();
    } catch (e) {
      errorBox.replaceChildren(h("p", { class: "error-box" }, (e as Error).message));
      cancel.disabled = false;
    }
  } }, "Cancel");
  const retry = h("button", { type: "button", id: "retry", class: "quiet", onclick: async () => {
    const again = await api<any>(`/v1/runs/${id}/retry`, { method: "POST" });
    const inputs = chosenInputs.get(id);
    if (inputs) chosenInputs.set(again.id, inputs);
    go(`#/runs/${again.id}`);
  } }, "Retry");
  main.replaceChildren(
    h("h1", {}, "Run ", h("span", { class: "mono" }, id), " ", badge),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-label": "Status" }, facts, bar, line, errorBox, h("div", { class: "actions" }, cancel, retry)),
      h("section", { class: "panel", "aria-label": "Progress details" }, h("h2", {}, "Logs"), noLogs, logs, texts, attempts, children)),
    result);

  const paint = () => {
    badge.replaceChildren(statusBadge(run.status));
    const p = run.progress ?? {};
    if (run.status === "succeeded") bar.value = 1;
    else if (p.fraction != null) bar.value = p.fraction;
    else bar.removeAttribute("value");
    bar.hidden = TERMINAL.has(run.status) && run.status !== "succeeded";
    line.textContent = TERMINAL.has(run.status) ? "" : progressLine(run);
    const started = run.started_at ? new Date(run.started_at).getTime() : null;
    const finished = run.finished_at ? new Date(run.finished_at).getTime() : null;
    facts.replaceChildren(
      h("dt", {}, "Pipeline"), h("dd", {}, h("a", { href: `#/?pipeline=${run.pipeline}` }, run.pipeline)),
      h("dt", {}, "Backend"), h("dd", {}, `${run.backend.kind} ${run.backend.target}${run.backend.attempt > 1 ? ` (attempt ${run.backend.attempt})` : ""}`),
      h("dt", {}, "Created"), h("dd", {}, when(run.created_at)),
      ...(started && finished ? [h("dt", {}, "Took"), h("dd", {}, seconds((finished - started) / 1000))] : []),
      ...(run.cache_hit ? [h("dt", {}, "Cached"), h("dd", {}, `from ${run.cached_from}`)] : []),
      ...(run.retry_of ? [h("dt", {}, "Retry of"), h("dd", {}, h("a", { href: `#/runs/${run.retry_of}` }, run.retry_of))] : []),
      ...(run.parent ? [h("dt", {}, "Stage of"), h("dd", {}, h("a", { href: `#/runs/${run.parent}` }, run.parent))] : []));
    errorBox.replaceChildren(run.error ? h("div", { class: "error-box", role: "alert" }, h("strong", {}, run.error.code), ": ", run.error.message) : "");
    cancel.disabled = TERMINAL.has(run.status);
    retry.disabled = !TERMINAL.has(run.status);
    const table = attemptsTable(run);
    attempts.replaceChildren(...(table ? [h("h2", {}, "Attempts"), table] : []));
    children.replaceChildren(...(run.children?.length
      ? [h("h2", {}, "Stages"), h("ol", {}, ...run.children.map((c: any) => h("li", { "data-child": c.stage }, `${c.stage}: `, h("a", { href: `#/runs/${c.run}` }, c.run))))]
      : []));
  };
  paint();

  let shown = false;
  const showResult = async () => {
    if (shown || run.status !== "succeeded") return;
    shown = true;
    result.replaceChildren(await resultBlock(run));
  };
  if (run.status === "succeeded") await showResult();
  else if (TERMINAL.has(run.status)) result.replaceChildren(outputsBlock(run.outputs) ?? "");

  // Model servers stream text: one block per request and batch, a later try starting over.
  const pieces = new Map<string, { attempt: number; el: HTMLElement }>();
  followEvents(`/v1/runs/${encodeURIComponent(id)}/events`, (m) => {
    const e = JSON.parse(m.data);
    for (const l of e.logs ?? []) logs.append(l + "\n");
    noLogs.hidden = logs.textContent !== "";
    logs.hidden = !noLogs.hidden;
    if (e.logs?.length) logs.scrollTop = logs.scrollHeight;
    if (e.text) {
      const key = `${e.text.request} ${e.text.batch}`;
      let piece = pieces.get(key);
      if (!piece || piece.attempt !== e.text.try) {
        const el = piece?.el ?? texts.appendChild(h("pre", { class: "text-output", "data-text": key, "aria-label": `${e.text.request}, batch ${e.text.batch}` }));
        el.textContent = "";
        piece = { attempt: e.text.try, el };
        pieces.set(key, piece);
      }
      piece.el.append(e.text.text);
    }
    run = { ...run, status: e.status, progress: e.progress, error: e.error ?? run.error };
    paint();
    if (TERMINAL.has(e.status) || e.type === "run.updated") {
      // The full run has what events leave out (artifacts, attempts, children).
      api<any>(`/v1/runs/${encodeURIComponent(id)}`).then((r) => {
        if (signal.aborted) return;
        run = r;
        paint();
        if (TERMINAL.has(r.status)) {
          if (r.status === "succeeded") showResult();
          else result.replaceChildren(outputsBlock(r.outputs) ?? "");
        }
      });
    }
    return TERMINAL.has(e.status);
  }, signal).catch((e) => errorBox.replaceChildren(h("p", { class: "error-box" }, `Live updates stopped: ${e.message}`)));
}
