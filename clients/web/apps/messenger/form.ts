// The pre-chat form: the choices and the extra fields (after the issue
// type, for guests) come from SessionService.GetPreChatForm, the checks
// from the browser first and then from the server, whose refusals are shown
// next to the field they concern (aria-describedby) or, for the whole form
// (such as the guest session limit), in an alert.
import { ConnectError, errorReason } from "../../src/index.js";
import type { IssueType, PreChatField } from "../../src/index.js";
import { el } from "../shared/dom.js";

/** What the visitor filled in. Name and email are empty for signed-in customers. */
export interface PreChat {
  name: string;
  email: string;
  issueType: string;
  firstMessage: string;
  /** The extra fields' values by name, empty optional ones left out. */
  formFields: Record<string, string>;
}

/** The form's key of an extra field: its form_fields name, prefixed so it cannot clash with the form's own fields. */
const extraKey = (name: string) => `form.${name}`;

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

function field(name: string, label: string, control: Field["control"], required: boolean, hint?: string): Field {
  const id = `f-${name.replace(/\./g, "-")}`;
  control.id = id;
  control.name = name;
  const error = el("p", { id: `${id}-error`, class: "field-error", hidden: true });
  const help = hint ? el("p", { id: `${id}-hint`, class: "note" }, hint) : undefined;
  control.setAttribute("aria-describedby", help ? `${help.id} ${error.id}` : error.id);
  if (required) {
    control.required = true;
    control.setAttribute("aria-required", "true");
  }
  const row = el(
    "div",
    { class: "field" },
    el("label", { for: id }, label, required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : " (optional)"),
    control,
    help,
    error,
  );
  return { control, error, row };
}

/** Returns the row of a configured extra field: a choice among its options, or a text input. */
function extraField(f: PreChatField): Field {
  let control: Field["control"];
  if (f.options.length > 0) {
    control = el("select", {}, el("option", { value: "" }, f.required ? "Choose…" : "—"));
    for (const o of f.options) control.append(el("option", { value: o }, o));
  } else {
    control = el("input", { type: "text", maxlength: f.maxLength || 500 });
  }
  return field(extraKey(f.name), f.label, control, f.required, f.hint || undefined);
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
    const m = /^\s*-\s*([a-z_]+)(?:\["([a-z0-9_]+)"\])?[^:]*:\s*(.*?)(?:\s*\[[\w.]+\])?\s*$/.exec(line);
    if (m) out.set(m[1] === "form_fields" && m[2] ? extraKey(m[2]) : m[1], m[3]);
  }
  return out;
}

/**
 * Returns the pre-chat form. submit is called with the values once the
 * browser's checks pass; if it throws, the error is shown on the form and
 * the visitor may correct and send again.
 */
export function preChatForm(
  issueTypes: IssueType[],
  extraFields: PreChatField[],
  signedIn: boolean,
  submit: (v: PreChat) => Promise<void>,
): HTMLFormElement {
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
    ...extraFields.map((f) => add(extraField(f), extraKey(f.name))),
    add(field("first_message", "Your question", el("textarea", { rows: 3, maxlength: 4000 }), false), "first_message"),
    alert,
    button,
  );

  const value = (k: string) => fields.get(k)?.control.value.trim() ?? "";
  // What the browser's own checks say about a field: the fixed texts above,
  // or, for an extra field, its label.
  const extra = new Map(extraFields.map((f) => [extraKey(f.name), f]));
  const hint = (k: string) => hints[k] ?? (extra.has(k) ? `Fill in ${extra.get(k)!.label}.` : undefined);

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
      setError(f, bad ? hint(k) : undefined);
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
      const formFields: Record<string, string> = {};
      for (const f of extraFields) {
        // A choice is sent exactly as offered; typed text without its outer spaces.
        const control = fields.get(extraKey(f.name))!.control;
        const v = control instanceof HTMLSelectElement ? control.value : control.value.trim();
        if (v !== "") formFields[f.name] = v;
      }
      await submit({ name: value("name"), email: value("email"), issueType: value("issue_type"), firstMessage: value("first_message"), formFields });
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
    } else if (reason?.startsWith("FORM_FIELD_")) {
      // The server names the field as form_fields["name"] and says what is
      // wrong in words, with its label.
      const name = /form_fields\["([a-z0-9_]+)"\]/.exec(ce.rawMessage)?.[1];
      target = name ? fields.get(extraKey(name)) : undefined;
      if (target) setError(target, ce.rawMessage.replace(/\s*\(form_fields\["[a-z0-9_]+"\]\)/, ""));
    }
    if (target) {
      if (!target.error.textContent) setError(target, hint(target.control.name));
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
