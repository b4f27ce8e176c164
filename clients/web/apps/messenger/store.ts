// What the messenger keeps across reloads, per site, in localStorage: the
// open conversation, the guest token that reads it (guests only) and the
// last seq the visitor has seen (for the unread count).

/** Saved is the state of the site's open chat. */
export interface Saved {
  conversationId: string;
  /** Set for guest chats; signed-in customers authenticate with their JWT. */
  guestToken?: string;
  /** The highest seq the visitor has seen with the panel open. */
  seenSeq: number;
}

const key = (site: string) => `parley:messenger:${site}`;

/** Returns the saved chat of site, or undefined (also when storage is unavailable or garbled). */
export function load(site: string): Saved | undefined {
  try {
    const raw = localStorage.getItem(key(site));
    if (!raw) return undefined;
    const v = JSON.parse(raw) as Partial<Saved>;
    if (typeof v.conversationId !== "string" || typeof v.seenSeq !== "number") return undefined;
    if (v.guestToken !== undefined && typeof v.guestToken !== "string") return undefined;
    return { conversationId: v.conversationId, guestToken: v.guestToken, seenSeq: v.seenSeq };
  } catch {
    return undefined;
  }
}

/** Saves the chat of site; storage failures (private mode, quota) only lose the resume. */
export function save(site: string, s: Saved): void {
  try {
    localStorage.setItem(key(site), JSON.stringify(s));
  } catch {
    // Without storage the chat still works; it just does not survive a reload.
  }
}

/** Forgets the chat of site. */
export function forget(site: string): void {
  try {
    localStorage.removeItem(key(site));
  } catch {
    // Nothing saved to forget.
  }
}
