/** A small DOM toolkit: `h()` builds elements, and helpers for text people read. */

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/**
 * `h("button", { class: "x", onclick: f, "aria-label": "Send" }, "Send")`. Attributes whose
 * value is false/null/undefined are left out; `on*` functions become listeners.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v as EventListener);
    else if (k === "value" && "value" in el) (el as HTMLInputElement).value = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c !== null && c !== undefined && c !== false) el.append(c);
  }
}

/** Replaces `el`'s children. */
export function fill(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A time as people read it: "14:05" today, else "5 Dec 14:05", in the local zone. */
export function when(ms: number): string {
  const d = new Date(ms);
  const now = new Date();
  const time = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: d.getFullYear() === now.getFullYear() ? undefined : "numeric" })} ${time}`;
}

/** A file size: "1.2 MB". */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A modal dialog with a title, body and a close button; resolves when it closes. */
export function dialog(title: string, body: (close: () => void) => Child | Child[]): HTMLDialogElement {
  const d = h("dialog", { "aria-label": title });
  const close = () => d.close();
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  d.setAttribute("aria-labelledby", titleId);
  fill(
    d,
    h("header", {}, h("h2", { id: titleId }, title), h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: close }, "✕")),
    h("div", { class: "dialog-body" }, body(close)),
  );
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  return d;
}

/** A form that runs `onSubmit` instead of navigating, its submit button disabled meanwhile. */
export function form(onSubmit: (f: HTMLFormElement) => Promise<void> | void, ...children: (HTMLElement | null)[]): HTMLFormElement {
  const f = h("form", {}, ...children);
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    const btn = f.querySelector<HTMLButtonElement>("button[type=submit]");
    if (btn) btn.disabled = true;
    Promise.resolve(onSubmit(f)).finally(() => {
      if (btn) btn.disabled = false;
    });
  });
  return f;
}

/** A labelled input row. */
export function field(label: string, input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, hint?: string): HTMLElement {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

/** Shows a short notice at the bottom of the screen (read out by screen readers). */
export function toast(text: string, kind: "info" | "error" = "info"): void {
  const box = document.getElementById("toasts")!;
  const t = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}
