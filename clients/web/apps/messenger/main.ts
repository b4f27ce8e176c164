// The messenger iframe page, served by parleyd at
// /messenger/?site=<site id>&parent=<host page origin>. It talks to the API on
// its own origin: guests with the guest token of their chat, signed-in
// customers with the JWT the host page hands over on every call.
import { Channel, ConnectError, ConversationState } from "../../src/index.js";
import { messengerClient, type MessengerClient } from "./api.js";
import { clear, el, uuid } from "../shared/dom.js";
import { Chat } from "./chat.js";
import { preChatForm } from "./form.js";
import { connectHost, parentOrigin } from "./host.js";
import { forget, load, save } from "./store.js";

/** Who the API calls authenticate as. */
type Auth = { kind: "none" } | { kind: "guest"; token: string } | { kind: "customer" };

const params = new URLSearchParams(location.search);
const site = params.get("site") ?? "";
const host = connectHost(parentOrigin(params.get("parent")));
const main = document.getElementById("app")!;

let auth: Auth = { kind: "none" };
let signedIn = false;
let chat: Chat | undefined;
let intersecting = false;
/** Bumped by every change of view, so a form that loads late does not replace a newer view. */
let view = 0;
const client: MessengerClient = messengerClient(location.origin, () =>
  auth.kind === "guest" ? auth.token : auth.kind === "customer" ? host.requestToken() : undefined,
);

function shown(): boolean {
  return intersecting && document.visibilityState === "visible";
}

function openChat(conversationId: string, seenSeq: number): void {
  view++;
  chat?.stop();
  const c = new Chat(client, conversationId, seenSeq, {
    seen: (seq) => save(site, { conversationId, guestToken: auth.kind === "guest" ? auth.token : undefined, seenSeq: seq }),
    unread: (count) => host.send("parley:unread", { count }),
    ended: () => forget(site),
    newChat: () => void showForm(true),
  });
  chat = c;
  main.replaceChildren(c.root);
  c.setShown(shown());
  void c.run();
}

/** Shows the pre-chat form (a short one for signed-in customers). */
async function showForm(focus = false): Promise<void> {
  const mine = ++view;
  chat?.stop();
  chat = undefined;
  if (auth.kind === "guest") auth = { kind: "none" };
  clear(main);
  const loading = el("p", { class: "note", role: "status" }, "Loading…");
  main.append(loading);
  let preChat;
  try {
    preChat = await client.session.getPreChatForm({});
  } catch (err) {
    if (mine !== view) return;
    loading.textContent = `Chat is not available right now (${ConnectError.from(err).rawMessage}).`;
    main.append(el("button", { type: "button", class: "primary", onclick: () => void showForm(true) }, "Try again"));
    return;
  }
  if (mine !== view) return;
  const requestId = uuid(); // one per form: a retry after a lost answer gets the same chat
  const customer = signedIn;
  // The extra fields are the guest form's: a signed-in customer's short
  // form has the issue type and the question only.
  const form = preChatForm(preChat.issueTypes, customer ? [] : preChat.fields, customer, async (v) => {
    if (customer) {
      auth = { kind: "customer" };
      const r = await client.session.startCustomerChat({ requestId, issueType: v.issueType, firstMessage: v.firstMessage, channel: Channel.MESSENGER });
      save(site, { conversationId: r.conversation!.id, seenSeq: 0 });
      openChat(r.conversation!.id, 0);
    } else {
      const r = await client.session.startGuestChat({
        requestId,
        name: v.name,
        email: v.email,
        issueType: v.issueType,
        firstMessage: v.firstMessage,
        formFields: v.formFields,
        channel: Channel.MESSENGER,
        siteId: site,
      });
      auth = { kind: "guest", token: r.guestToken };
      save(site, { conversationId: r.conversation!.id, guestToken: r.guestToken, seenSeq: 0 });
      openChat(r.conversation!.id, 0);
    }
    if (shown()) chat?.focus();
  });
  main.replaceChildren(form);
  if (focus) form.querySelector<HTMLElement>("input, select")?.focus();
}

/**
 * The host page signed the visitor in: their open customer chat is shown.
 * A guest chat that is open stays the guest's: the host page's word is no
 * reason to move it into an account (a script on the host page could name
 * any account, and would then read the chat with that account's JWT), so
 * the identity applies from the next chat on, once this one closes.
 */
async function signIn(): Promise<void> {
  if (signedIn) return;
  signedIn = true;
  if (chat) return;
  auth = { kind: "customer" };
  try {
    const r = await client.session.listMyConversations({ pageSize: 10 });
    const open = r.conversations.find((c) => c.state !== ConversationState.CLOSED);
    if (open) {
      openChat(open.id, load(site)?.conversationId === open.id ? load(site)!.seenSeq : 0);
      return;
    }
  } catch {
    // Fall back to the form; starting a chat will say what is wrong.
  }
  await showForm(main.contains(document.activeElement));
}

/** The host page signed the visitor out: their chat is not shown any more. */
function signOut(): void {
  if (!signedIn) return;
  signedIn = false;
  if (auth.kind === "customer") {
    auth = { kind: "none" };
    forget(site);
    void showForm();
  }
}

host.on("parley:open", () => {
  intersecting = true;
  chat?.setShown(shown());
  if (chat) chat.focus();
  else main.querySelector<HTMLElement>("input, select, button")?.focus();
});
host.on("parley:hide", () => {
  intersecting = false;
  chat?.setShown(shown());
});
host.on("parley:identity", (d) => (d.signedIn === true ? void signIn() : signOut()));

new IntersectionObserver((entries) => {
  intersecting = entries.some((e) => e.isIntersecting);
  chat?.setShown(shown());
}).observe(main);
document.addEventListener("visibilitychange", () => chat?.setShown(shown()));

const closeButton = document.getElementById("close")!;
closeButton.hidden = !host.embedded;
closeButton.addEventListener("click", () => host.send("parley:close"));

const saved = load(site);
if (saved?.guestToken) {
  auth = { kind: "guest", token: saved.guestToken };
  openChat(saved.conversationId, saved.seenSeq);
} else {
  void showForm();
}
host.send("parley:ready");
// A host page that signed the visitor in before this page loaded answers with a token.
if (host.embedded) {
  void host.requestToken().then((token) => {
    if (token) void signIn();
    else if (saved && !saved.guestToken) forget(site); // a customer chat of someone no longer signed in
  });
}
