// The agent workspace: token sign-in, then the agent's desk or, for
// supervisor and admin tokens, the supervisor view. The token lives in
// sessionStorage (this tab only) and is sent as a bearer token with every
// call; signing out forgets it.
import { Code, ConnectError } from "@connectrpc/connect";

import { Presence, createParleyClient, type StreamState } from "../../src/index.js";
import { AgentDesk, agentInfo, clearCursors, type AgentInfo } from "./agent.js";
import { SupervisorView } from "./supervisor.js";
import { byId, describeError, presenceName } from "./util.js";

const tokenKey = "parley.workspace.token";
const roleKey = "parley.workspace.role";
const agentKey = "parley.workspace.agent";

type Role = "agent" | "overseer";

const client = createParleyClient(location.origin, { token: () => sessionStorage.getItem(tokenKey) ?? undefined });

let view: { stop(): void } | null = null;
let streamState: StreamState | "offline" = "connecting";
let streamDetail = "";

const signin = byId("signin");
const signinForm = byId<HTMLFormElement>("signin-form");
const signinError = byId("signin-error");
const agentView = byId("agent-view");
const supervisorView = byId("supervisor-view");
const signout = byId<HTMLButtonElement>("signout");
const whoami = byId("whoami");
const conn = byId("conn");

function showStatus(state: StreamState | "offline", err?: unknown): void {
  if (state === "ended" && err !== undefined && ConnectError.from(err).code === Code.Unauthenticated) {
    // The token was revoked or expired: back to the sign-in form.
    void signOut("Your token is no longer accepted: sign in again.");
    return;
  }
  streamState = state;
  streamDetail = err === undefined ? "" : describeError(err);
  renderStatus();
}

function renderStatus(): void {
  let text: string;
  if (!navigator.onLine) text = "Offline: waiting for the network…";
  else if (streamState === "live") text = "Connected";
  else if (streamState === "connecting") text = "Connecting…";
  else if (streamState === "retrying") text = "Connection lost: reconnecting…";
  else text = `Disconnected${streamDetail ? `: ${streamDetail}` : ""}. Reload the page to try again.`;
  conn.textContent = text;
  conn.dataset.state = navigator.onLine ? streamState : "offline";
}

window.addEventListener("online", renderStatus);
window.addEventListener("offline", renderStatus);

function show(which: "signin" | Role): void {
  signin.hidden = which !== "signin";
  agentView.hidden = which !== "agent";
  supervisorView.hidden = which !== "overseer";
  signout.hidden = which === "signin";
  conn.hidden = which === "signin";
}

async function detectRole(): Promise<Role> {
  try {
    await client.routing.listAgents({ pageSize: 1 });
    return "overseer";
  } catch (err) {
    if (ConnectError.from(err).code === Code.PermissionDenied) return "agent";
    throw err;
  }
}

function start(role: Role, info: AgentInfo | null): void {
  show(role);
  if (role === "agent" && info) {
    whoami.textContent = `Signed in as ${info.displayName}`;
    const desk = new AgentDesk(client, info, showStatus, (i) => sessionStorage.setItem(agentKey, JSON.stringify(i)));
    view = desk;
    void desk.run();
  } else {
    whoami.textContent = "Signed in as a supervisor";
    const sv = new SupervisorView(client, showStatus);
    view = sv;
    void sv.run();
  }
  document.querySelector<HTMLElement>(role === "agent" ? "#presence select" : "#supervisor-view h2")?.focus();
}

signinForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = byId<HTMLInputElement>("token").value.trim();
  const presence = Number(byId<HTMLSelectElement>("start-presence").value) as Presence;
  if (!token) return;
  signinError.textContent = "";
  const button = signinForm.querySelector("button")!;
  button.disabled = true;
  sessionStorage.setItem(tokenKey, token);
  try {
    const role = await detectRole();
    let info: AgentInfo | null = null;
    if (role === "agent") {
      const res = await client.routing.setPresence({ presence });
      info = agentInfo(res.agent!);
      sessionStorage.setItem(agentKey, JSON.stringify(info));
    }
    sessionStorage.setItem(roleKey, role);
    byId<HTMLInputElement>("token").value = "";
    start(role, info);
  } catch (err) {
    sessionStorage.removeItem(tokenKey);
    const code = ConnectError.from(err).code;
    signinError.textContent = code === Code.Unauthenticated ? "That token was not accepted." : `Could not sign in: ${describeError(err)}`;
  } finally {
    button.disabled = false;
  }
});

signout.addEventListener("click", () => void signOut(""));

/** Forgets the session and shows the sign-in form with why. */
async function signOut(why: string): Promise<void> {
  signout.disabled = true;
  if (!why && sessionStorage.getItem(roleKey) === "agent") {
    // Best effort: the server also counts an agent whose stream is gone as offline after a grace period.
    await Promise.race([client.routing.setPresence({ presence: Presence.OFFLINE }).catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
  }
  view?.stop();
  view = null;
  sessionStorage.removeItem(tokenKey);
  sessionStorage.removeItem(roleKey);
  sessionStorage.removeItem(agentKey);
  clearCursors();
  whoami.textContent = "";
  signout.disabled = false;
  show("signin");
  signinError.textContent = why;
  byId("token").focus();
}

function boot(): void {
  for (const p of [Presence.AVAILABLE, Presence.AWAY]) {
    const o = document.createElement("option");
    o.value = String(p);
    o.textContent = presenceName(p);
    byId("start-presence").append(o);
  }
  const role = sessionStorage.getItem(roleKey) as Role | null;
  if (sessionStorage.getItem(tokenKey) && (role === "agent" || role === "overseer")) {
    let info: AgentInfo | null = null;
    try {
      info = JSON.parse(sessionStorage.getItem(agentKey) ?? "null") as AgentInfo | null;
    } catch {
      info = null;
    }
    if (role === "overseer" || (info && typeof info.id === "string")) {
      start(role, info);
      return;
    }
  }
  show("signin");
}

boot();
