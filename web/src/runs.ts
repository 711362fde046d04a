// The runs list: newest first, filtered by status and pipeline, a page at a time, refreshed
// while it is on screen.

import { api } from "./api";
import { TERMINAL, h, statusBadge, when } from "./dom";

const STATUSES = ["", "created", "queued", "submitting", "running", "fetching", "succeeded", "failed", "cancelled", "expired"];
const REFRESH_MS = 2000;

export async function runsPage(main: HTMLElement, signal: AbortSignal): Promise<void> {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const { pipelines } = await api<{ pipelines: { name: string }[] }>("/v1/pipelines");
  const status = h("select", { id: "filter-status" }, ...STATUSES.map((s) => h("option", { value: s, selected: s === (params.get("status") ?? "") }, s || "any")));
  const pipeline = h("select", { id: "filter-pipeline" },
    h("option", { value: "" }, "any"),
    ...pipelines.map((p) => h("option", { value: p.name, selected: p.name === params.get("pipeline") }, p.name)));
  const body = h("tbody", {});
  const note = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const newer = h("button", { type: "button", class: "quiet", id: "newer" }, "Newer");
  const older = h("button", { type: "button", class: "quiet", id: "older" }, "Older");
  main.replaceChildren(h("h1", {}, "Runs"),
    h("div", { class: "panel" },
      h("div", { class: "filters" },
        h("div", {}, h("label", { for: "filter-status" }, "Status"), status),
        h("div", {}, h("label", { for: "filter-pipeline" }, "Pipeline"), pipeline)),
      h("div", { class: "table-wrap" }, h("table", { "aria-label": "Runs" },
        h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Pipeline"), h("th", {}, "Status"), h("th", {}, "Created"), h("th", {}, "Backend"))),
        body)),
      note,
      h("div", { class: "actions" }, newer, older)));

  // Cursors of the pages before this one, so "Newer" walks back.
  const cursors: (string | null)[] = [];
  let cursor: string | null = null;
  let next: string | null = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: "20" });
    if (status.value) q.set("status", status.value);
    if (pipeline.value) q.set("pipeline", pipeline.value);
    if (cursor) q.set("cursor", cursor);
    const page = await api<{ runs: any[]; next_cursor: string | null }>(`/v1/runs?${q}`);
    if (signal.aborted) return;
    next = page.next_cursor;
    body.replaceChildren(...page.runs.map((r) => h("tr", { "data-run": r.id },
      h("td", { class: "mono" }, h("a", { href: `#/runs/${r.id}` }, r.id)),
      h("td", {}, r.pipeline),
      h("td", {}, statusBadge(r.status), !TERMINAL.has(r.status) && r.progress?.queue_rank != null ? h("span", { class: "muted" }, ` #${r.progress.queue_rank}`) : null),
      h("td", {}, when(r.created_at)),
      h("td", {}, `${r.backend.kind}${r.cache_hit ? " (cached)" : ""}`))));
    note.textContent = page.runs.length ? "" : "No runs match.";
    newer.disabled = cursors.length === 0;
    older.disabled = !next;
  };
  const refilter = () => {
    cursors.length = 0;
    cursor = null;
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (pipeline.value) q.set("pipeline", pipeline.value);
    history.replaceState(null, "", `#/runs${q.size ? `?${q}` : ""}`);
    load();
  };
  status.addEventListener("change", refilter);
  pipeline.addEventListener("change", refilter);
  older.addEventListener("click", () => {
    if (!next) return;
    cursors.push(cursor);
    cursor = next;
    load();
  });
  newer.addEventListener("click", () => {
    cursor = cursors.pop() ?? null;
    load();
  });
  await load();
  // Live: the page on screen is read again every two seconds while the tab is visible.
  const timer = setInterval(() => {
    if (!document.hidden) load().catch(() => {});
  }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
