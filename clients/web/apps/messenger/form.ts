// The pre-chat form: the choices come from SessionService.GetPreChatForm,
// the checks from the browser first and then from the server, whose
// refusals are shown next to the field they concern (aria-describedby) or,
// for the whole form (such as the guest session limit), in an alert.
import { ConnectError, errorReason } from "../../src/index.js";
import type { IssueType } from "../../src/index.js";
import { el } from "../shared/dom.js";

/** What the visitor filled in. Name and email are empty for signed-in customers. */
export interface PreChat {
  name: string;
  email: string;
  issueType: string;
  firstMessage: string;
}

interface Field {
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
  error: HTMLElement;
  row: HTMLElement;
}

/** Messages for the checks the browser and the server make, by field. */
const hints: Record<string, string> = {
  name: "Enter your name.",
  email: "Enter a valid email address, such as name@example.com.",
  issue_type: "Choose what your question is about.",
  first_message: "Your message is too long (at most 4000 characters).",
};

function field(name: string, label: string, control: Field["control"], required: boolean): Field {
  const id = `f-${name}`;
  control.id = id;
  control.name = name;
  const error = el("p", { id: `${id}-error`, class: "field-error", hidden: true });
  control.setAttribute("aria-describedby", error.id);
  if (required) {
    control.required = true;
    control.setAttribute("aria-required", "true");
  }
  const row = el(
    "div",
    { class: "field" },
    el("label", { for: id }, label, required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : " (optional)"),
    control,
    error,
  );
  return { control, error, row };
}

function setError(f: Field, message: string | undefined): void {
  f.error.textContent = message ?? "";
  f.error.hidden = !message;
  if (message) f.control.setAttribute("aria-invalid", "true");
  else f.control.removeAttribute("aria-invalid");
}

/**
 * Parses protovalidate's refusal text ("validation error:\n - email: value
 * must be ...") into field names and messages.
 */
function violations(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of message.split("\n")) {
    const m = /^\s*-\s*([a-z_]+)[^:]*:\s*(.*?)(?:\s*\[[\w.]+\])?\s*$/.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

/**
 * Returns the pre-chat form. submit is called with the values once the
 * browser's checks pass; if it throws, the error is shown on the form and
 * the visitor may correct and send again.
 */
export function preChatForm(issueTypes: IssueType[], signedIn: boolean, submit: (v: PreChat) => Promise<void>): HTMLFormElement {
  const fields = new Map<string, Field>();
  const add = (f: Field, key: string) => (fields.set(key, f), f.row);
  const select = el("select", {}, el("option", { value: "" }, "Choose…"));
  for (const it of issueTypes) select.append(el("option", { value: it.value }, it.displayName));
  const alert = el("div", { class: "form-alert", role: "alert" });
  const button = el("button", { type: "submit", class: "primary" }, "Start chat");

  const form = el(
    "form",
    { class: "prechat", novalidate: true, "aria-labelledby": "prechat-title" },
    el("h2", { id: "prechat-title" }, signedIn ? "How can we help?" : "Before we start"),
    el("p", { class: "note" }, "Fields marked * are required."),
    !signedIn && add(field("name", "Your name", el("input", { type: "text", autocomplete: "name", maxlength: 200 }), true), "name"),
    !signedIn && add(field("email", "Email", el("input", { type: "email", autocomplete: "email", maxlength: 254 }), true), "email"),
    add(field("issue_type", "What is it about?", select, true), "issue_type"),
    add(field("first_message", "Your question", el("textarea", { rows: 3, maxlength: 4000 }), false), "first_message"),
    alert,
    button,
  );

  const value = (k: string) => fields.get(k)?.control.value.trim() ?? "";

  // While a start is under way the button is aria-disabled, not disabled: a
  // disabled button would drop the keyboard focus.
  let busy = false;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    alert.textContent = "";
    let first: Field | undefined;
    for (const [k, f] of fields) {
      const bad = !f.control.checkValidity() || (f.control.required && value(k) === "");
      setError(f, bad ? hints[k] : undefined);
      if (bad) first ??= f;
    }
    if (first) {
      first.control.focus();
      return;
    }
    busy = true;
    button.setAttribute("aria-disabled", "true");
    button.textContent = "Starting…";
    try {
      await submit({ name: value("name"), email: value("email"), issueType: value("issue_type"), firstMessage: value("first_message") });
    } catch (err) {
      showError(err);
    } finally {
      busy = false;
      button.removeAttribute("aria-disabled");
      button.textContent = "Start chat";
    }
  });

  function showError(err: unknown): void {
    const reason = errorReason(err);
    const ce = ConnectError.from(err);
    let target: Field | undefined;
    if (reason === "INVALID_FIELD") {
      for (const [k, msg] of violations(ce.rawMessage)) {
        const f = fields.get(k);
        if (!f) continue;
        setError(f, hints[k] ?? msg);
        target ??= f;
      }
    } else if (reason === "NAME_BLANK") {
      target = fields.get("name");
    } else if (reason === "UNKNOWN_ISSUE_TYPE") {
      target = fields.get("issue_type");
    }
    if (target) {
      if (!target.error.textContent) setError(target, hints[target.control.name]);
      target.control.focus();
      return;
    }
    // The whole form: the guest session limit (its text is the admin's
    // setting), a site that may not start chats, the network.
    alert.textContent = reason?.startsWith("GUEST_SESSION_LIMIT")
      ? ce.rawMessage
      : reason === "ORIGIN_NOT_ALLOWED" || reason === "UNKNOWN_SITE"
        ? "Chat is not available on this site."
        : `We could not start the chat. ${ce.rawMessage || "Please try again."}`;
  }

  return form;
}
