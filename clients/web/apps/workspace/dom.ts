// Text-only DOM helpers of the workspace: every string given here reaches
// the page through textContent or setAttribute, never as markup.

/** Attributes and properties h may set on an element. */
export interface Props {
  [name: string]: string | number | boolean | undefined | ((ev: Event) => void);
}

/** A child of h: an element, text (rendered as text), or nothing. */
export type Child = Node | string | number | null | undefined | false;

/**
 * Creates an element. Props starting with "on" are event listeners; "class"
 * and other names are attributes (booleans add or omit them). Children are
 * nodes or text nodes.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value as EventListener);
    } else if (name === "value" && "value" in el) {
      (el as HTMLInputElement).value = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children to parent, strings as text nodes. */
export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces every child of parent. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** Returns the element with the id, or throws: the page's skeleton is fixed. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`workspace: #${id} is missing from index.html`);
  return el as T;
}

/** Formats a duration in seconds as m:ss. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
