// The messenger loader: the one script a site pastes into its pages,
//
//   <script async src="https://PARLEY/messenger.js" data-site-id="SITE_ID"></script>
//
// It adds a launcher button (fixed bottom-right) and a hidden iframe panel
// served by Parley (/messenger/?site=…&parent=…), and sets window.Parley =
// {open, close, identify, logout}. The chat runs inside the iframe, on
// Parley's origin: the host page's CSS and scripts cannot reach it. Host and
// iframe talk with postMessage only, with an explicit target origin, each
// ignoring messages from any other origin or window; what crosses is small
// protocol messages (ready, open, hide, close, unread count, identity, the host's
// own customer JWT when the iframe asks), never message text or the guest
// token. The launcher and the iframe live in a shadow root, out of reach of
// the page's style sheets; its host element's own styles are !important,
// which inside a shadow tree beats the page's !important too. (The root is
// open: a closed one would not keep the page's scripts out, since they could
// patch attachShadow first, and the iframe is the boundary that does.)

type GetToken = () => string | null | Promise<string | null>;

interface ParleyApi {
  open(): void;
  close(): void;
  identify(getToken: GetToken): void;
  logout(): void;
}

interface Message {
  type: string;
  id?: unknown;
  count?: unknown;
}

declare global {
  interface Window {
    Parley?: ParleyApi;
  }
}

const CSS = `:host{all:initial!important;display:block!important;position:fixed!important;right:20px!important;bottom:20px!important;left:auto!important;top:auto!important;width:auto!important;height:auto!important;z-index:2147483647!important;visibility:visible!important;opacity:1!important;transform:none!important;filter:none!important;clip-path:none!important;pointer-events:none!important}
button{pointer-events:auto;position:absolute;right:0;bottom:0;width:56px;height:56px;display:flex;align-items:center;justify-content:center;border:0;border-radius:50%;background:#1f5fbf;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}
button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}
svg{width:26px;height:26px;fill:currentColor}
span{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#c62828;font:700 12px/20px system-ui,sans-serif;text-align:center}
span:empty{display:none}
iframe{pointer-events:auto;position:absolute;right:0;bottom:72px;width:min(380px,calc(100vw - 40px));height:min(600px,calc(100vh - 112px));border:0;border-radius:12px;background:#fff;box-shadow:0 8px 30px rgba(0,0,0,.3)}
iframe[hidden]{display:none}`;

const CHAT_ICON =
  "M6 4h12a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4V6a2 2 0 0 1 2-2z";
const CLOSE_ICON = "M6 6l12 12M18 6L6 18";

(() => {
  if (window.Parley) return; // pasted twice: the first one stays
  const script =
    (document.currentScript as HTMLScriptElement | null) ??
    document.querySelector<HTMLScriptElement>('script[data-site-id][src*="/messenger.js"]');
  const siteId = script?.dataset.siteId;
  if (!script || !siteId) {
    console.error("Parley: the messenger script needs data-site-id");
    return;
  }
  const parley = new URL(script.src).origin;
  const doc = document;

  const host = doc.createElement("div");
  const root = host.attachShadow({ mode: "open" });
  // A constructed style sheet, not a <style> element: a host page's CSP
  // that forbids inline styles does not apply to it.
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
  root.adoptedStyleSheets = [sheet];
  const frame = doc.createElement("iframe");
  frame.id = "parley-messenger";
  frame.title = "Chat with us";
  frame.hidden = true;
  frame.setAttribute(
    "sandbox",
    "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads",
  );
  frame.src = `${parley}/messenger/?site=${encodeURIComponent(siteId)}&parent=${encodeURIComponent(location.origin)}`;
  const button = doc.createElement("button");
  button.type = "button";
  button.setAttribute("aria-controls", frame.id);
  const badge = doc.createElement("span");
  const svg = doc.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = doc.createElementNS("http://www.w3.org/2000/svg", "path");
  svg.append(path);
  button.append(svg, badge);
  root.append(frame, button);

  let open = false;
  let ready = false;
  let getToken: GetToken | null = null;

  const send = (msg: Record<string, unknown>) => {
    if (ready) frame.contentWindow?.postMessage(msg, parley);
  };
  const render = () => {
    frame.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    button.setAttribute("aria-label", open ? "Close chat" : badge.textContent ? `Chat with us (${badge.textContent} unread)` : "Chat with us");
    path.setAttribute("d", open ? CLOSE_ICON : CHAT_ICON);
    path.setAttribute("stroke", open ? "currentColor" : "none");
    path.setAttribute("stroke-width", "2.5");
  };
  const show = (value: boolean) => {
    open = value;
    if (open) badge.textContent = "";
    render();
    // The messenger is told both ways: a hidden iframe's own visibility
    // checks are not reliable in every browser.
    send({ type: open ? "parley:open" : "parley:hide" });
    if (!open) button.focus();
  };
  const identity = () => send({ type: "parley:identity", signedIn: getToken !== null });

  button.addEventListener("click", () => show(!open));
  window.addEventListener("message", async (event: MessageEvent) => {
    if (event.origin !== parley || event.source !== frame.contentWindow) return;
    const msg = event.data as Message | null;
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
    ready = true; // it speaks, so it listens
    switch (msg.type) {
      case "parley:ready":
        identity();
        if (open) send({ type: "parley:open" });
        break;
      case "parley:close":
        if (open) show(false);
        break;
      case "parley:unread": {
        const n = Number(msg.count);
        badge.textContent = !open && Number.isInteger(n) && n > 0 ? String(Math.min(n, 99)) : "";
        render();
        break;
      }
      case "parley:token-request": {
        let token: string | null = null;
        try {
          token = (await getToken?.()) ?? null;
        } catch (err) {
          console.error("Parley: the identify callback failed", err);
        }
        send({ type: "parley:token", id: msg.id, token: typeof token === "string" && token ? token : null });
        break;
      }
    }
  });

  render();
  window.Parley = {
    open: () => show(true),
    close: () => open && show(false),
    identify(fn: GetToken) {
      getToken = fn;
      identity();
    },
    logout() {
      getToken = null;
      identity();
    },
  };
  // On the root element, not the body: common CSS on a page's body
  // (transform, filter, will-change, contain, perspective, backdrop-filter)
  // makes the body the containing block of position: fixed descendants,
  // which would carry the launcher off the viewport with a long body.
  doc.documentElement.append(host);
})();

export {};
