// The page's entry: a hash router over three views (new run, runs, one run) and the key dialog.

import { ApiError, credential, setCredential } from "./api";
import { h } from "./dom";
import { newRunPage } from "./form";
import { runPage } from "./run";
import { runsPage } from "./runs";

const main = document.getElementById("main")!;
const banner = document.getElementById("banner")!;
const dialog = document.getElementById("key-dialog") as HTMLDialogElement;
const keyInput = document.getElementById("key-input") as HTMLInputElement;
const keyButton = document.getElementById("key-button")!;
let current = new AbortController();

function go(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function askForKey(): void {
  keyInput.value = "";
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}

function paintKeyButton(): void {
  keyButton.textContent = credential() ? "API key ✓" : "API key";
  keyButton.setAttribute("aria-label", credential() ? "API key (one is set)" : "API key (none set)");
}

dialog.addEventListener("close", () => {
  if (dialog.returnValue === "save" && keyInput.value.trim()) setCredential(keyInput.value.trim());
  if (dialog.returnValue === "clear") setCredential(null);
  keyInput.value = "";
  paintKeyButton();
  if (dialog.returnValue !== "cancel") route();
});
keyButton.addEventListener("click", askForKey);
window.addEventListener("spaceport:unauthorized", askForKey);

async function route(): Promise<void> {
  current.abort();
  current = new AbortController();
  const signal = current.signal;
  banner.hidden = true;
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  document.querySelectorAll("header nav a").forEach((a) => {
    const target = (a as HTMLAnchorElement).hash.replace(/^#/, "");
    if (target === path || (target === "/runs" && path.startsWith("/runs"))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  try {
    const run = path.match(/^\/runs\/(run_[A-Za-z0-9]+)$/);
    if (run) {
      document.title = `${run[1]} · Spaceport`;
      await runPage(main, run[1], go, signal);
    } else if (path === "/runs") {
      document.title = "Runs · Spaceport";
      await runsPage(main, signal);
    } else {
      document.title = "New run · Spaceport";
      await newRunPage(main, go);
    }
    main.setAttribute("data-ready", path);
  } catch (e) {
    if (signal.aborted) return;
    const message = e instanceof ApiError ? `${e.message} (${e.code})` : (e as Error).message;
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error-box", role: "alert" }, message));
  }
}

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});
paintKeyButton();
route();
