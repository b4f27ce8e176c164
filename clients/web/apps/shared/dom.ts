// Tiny DOM helpers shared by Parley's web apps. Everything that comes from
// the server or a user reaches the DOM as text (text nodes, textContent,
// setAttribute): never as markup.

/** What el() accepts as a child: strings and numbers become text nodes; null, undefined and false are skipped. */
export type Child = Node | string | number | null | undefined | false;

/** Properties el() sets: attributes (by setAttribute), a class, and event handlers (on*). */
export type Props = Record<string, string | number | boolean | EventListener | null | undefined>;

/**
 * Returns a new element. Attribute values are set with setAttribute, so
 * they cannot break out into markup; "href" and "src" go through safeUrl
 * first and are dropped when not http(s) or blob:. Props named on<event>
 * (onclick, oninput...) add event listeners; true sets an empty attribute,
 * false/null/undefined sets nothing.
 */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === false || value == null) continue;
    if (typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "href" || name === "src") {
      const url = safeUrl(String(value), true);
      if (url) node.setAttribute(name, url);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, ...children);
  return node;
}

/** Appends children to parent, strings and numbers as text nodes. */
export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** Removes every child of node. */
export function clear(node: Node): void {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** Replaces every child of parent with children (as append does). */
export function replace(parent: Node, ...children: Child[]): void {
  clear(parent);
  append(parent, ...children);
}

/**
 * Returns url normalized if it is an absolute http: or https: URL (or, with
 * allowBlob, a blob: URL of this page), else undefined. javascript:, data:,
 * vbscript: and relative URLs are refused.
 */
export function safeUrl(url: string, allowBlob = false): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed.href;
  if (allowBlob && parsed.protocol === "blob:" && url.startsWith(`blob:${location.origin}/`)) return parsed.href;
  return undefined;
}

// An http(s) URL in running text, up to whitespace or a quote/bracket.
const urlPattern = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/**
 * Returns text as nodes: text nodes, with http(s) URLs turned into links
 * that open in a new tab without a referrer or an opener. Trailing
 * punctuation stays outside the link.
 */
export function linkify(text: string): Node[] {
  const out: Node[] = [];
  let last = 0;
  for (const m of text.matchAll(urlPattern)) {
    let raw = m[0];
    const trail = /[.,;:!?)\]]+$/.exec(raw);
    if (trail) raw = raw.slice(0, -trail[0].length);
    const href = safeUrl(raw);
    if (!href) continue;
    const start = m.index;
    if (start > last) out.push(document.createTextNode(text.slice(last, start)));
    out.push(el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, raw));
    last = start + raw.length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

/** Returns a random version 4 UUID (crypto.randomUUID needs a secure context; this does not). */
export function uuid(): string {
  if (typeof crypto.randomUUID === "function" && isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Formats a byte count for people: 532 B, 12 KB, 3.4 MB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/** The file extension a download of each content type gets. */
const extensions: Record<string, string[]> = {
  "text/plain": ["txt"],
  "image/png": ["png"],
  "image/jpeg": ["jpg", "jpeg"],
  "image/gif": ["gif"],
  "image/webp": ["webp"],
  "application/pdf": ["pdf"],
};

/**
 * Returns the name a file of content type is saved under: filename without
 * path separators and control characters, whose extension matches the type
 * (the type the server checked, not the uploader's name for it): a
 * mismatching one gets the right one appended ("x.html" as text/plain is
 * saved as "x.html.txt", so opening it from disk never runs a script), and
 * a type not listed gets ".bin".
 */
export function downloadName(filename: string, contentType: string): string {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  let name = filename.replace(/[/\\\x00-\x1f\x7f]/g, "_").replace(/^[.\s]+|[.\s]+$/g, "");
  if (!name) name = "file";
  const want = extensions[type] ?? ["bin"];
  const ext = /\.([^.]+)$/.exec(name)?.[1]?.toLowerCase();
  if (!ext || !want.includes(ext)) name += `.${want[0]}`;
  return name.slice(-255);
}

/**
 * Starts a download of blob under filename (a text attribute, never
 * markup), its extension made to match the blob's type (see downloadName).
 */
export function download(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: downloadName(filename, blob.type) });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
