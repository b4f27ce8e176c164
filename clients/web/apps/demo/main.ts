// The demo host page's own script: "sign in as a demo customer". A real
// site signs its customers' tokens on its server; this demo signs one in the
// page (WebCrypto, HS256) with the public demo secret of the demo issuer
// (server/internal/identity/demo.yaml) and hands it to the messenger through
// Parley.identify, which asks for it again whenever the messenger needs a
// fresh one.

const ISSUER = "https://portal.example.com";
const AUDIENCE = "parley";
const DEMO_SECRET = "parley-demo-portal-secret-do-not-use-in-production";
const LIFETIME_S = 15 * 60;
const STORAGE_KEY = "parley-demo-customer";

interface Customer {
  sub: string;
  name: string;
  email: string;
}

type ParleyApi = { identify(getToken: () => Promise<string | null>): void; logout(): void };

const DEMO_CUSTOMER: Customer = { sub: "demo-customer-1", name: "Dana Demo", email: "dana@example.com" };

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const utf8 = (s: string) => new TextEncoder().encode(s);

/** Signs a customer token for c, valid for LIFETIME_S. */
async function mint(c: Customer): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url(utf8(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const claims = { iss: ISSUER, aud: AUDIENCE, sub: c.sub, name: c.name, email: c.email, iat: now, exp: now + LIFETIME_S };
  const body = base64url(utf8(JSON.stringify(claims)));
  const key = await crypto.subtle.importKey("raw", utf8(DEMO_SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(`${header}.${body}`)));
  return `${header}.${body}.${base64url(sig)}`;
}

function stored(): Customer | null {
  try {
    const c = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null") as Customer | null;
    return c && typeof c.sub === "string" ? c : null;
  } catch {
    return null;
  }
}

/** Calls fn with window.Parley once the loader script has run. */
function withParley(fn: (p: ParleyApi) => void): void {
  const p = (window as unknown as { Parley?: ParleyApi }).Parley;
  if (p) return fn(p);
  const script = document.querySelector<HTMLScriptElement>("script[data-site-id]");
  script?.addEventListener("load", () => {
    const loaded = (window as unknown as { Parley?: ParleyApi }).Parley;
    if (loaded) fn(loaded);
  });
}

const who = document.getElementById("who")!;
const signIn = document.getElementById("sign-in") as HTMLButtonElement;
const signOut = document.getElementById("sign-out") as HTMLButtonElement;

function show(c: Customer | null): void {
  who.textContent = c ? `Signed in as ${c.name} (${c.email})` : "Browsing as a guest";
  signIn.hidden = c !== null;
  signOut.hidden = c === null;
}

function identify(c: Customer): void {
  withParley((p) => p.identify(() => mint(c)));
}

signIn.addEventListener("click", () => {
  if (!crypto.subtle) {
    who.textContent = "Signing in needs a secure page: open the demo on localhost or over https.";
    return;
  }
  localStorage.setItem(STORAGE_KEY, JSON.stringify(DEMO_CUSTOMER));
  show(DEMO_CUSTOMER);
  identify(DEMO_CUSTOMER);
  signOut.focus();
});

signOut.addEventListener("click", () => {
  localStorage.removeItem(STORAGE_KEY);
  show(null);
  withParley((p) => p.logout());
  signIn.focus();
});

const current = stored();
show(current);
if (current) identify(current);
