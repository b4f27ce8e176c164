// Reading Parley's errors: the machine-readable reason (google.rpc.ErrorInfo)
// and the retry hint (google.rpc.RetryInfo) every Parley error may carry,
// decoded straight from the wire without any descriptors.
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** The ErrorInfo domain of Parley's errors. */
export const errorDomain = "parley.dev";

const errorInfoType = "google.rpc.ErrorInfo";
const retryInfoType = "google.rpc.RetryInfo";

/** The raw details of err as they came off the wire, or none. */
function incomingDetails(err: unknown): { type: string; value: Uint8Array }[] {
  if (!(err instanceof ConnectError)) {
    return [];
  }
  const out: { type: string; value: Uint8Array }[] = [];
  for (const d of err.details) {
    if ("type" in d && d.value instanceof Uint8Array) {
      out.push({ type: d.type, value: d.value });
    }
  }
  return out;
}

/** Decodes the reason and domain of a google.rpc.ErrorInfo. */
function decodeErrorInfo(bytes: Uint8Array): { reason: string; domain: string } {
  const r = new BinaryReader(bytes);
  let reason = "";
  let domain = "";
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      reason = r.string();
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      domain = r.string();
    } else {
      r.skip(wireType, field);
    }
  }
  return { reason, domain };
}

/** Decodes the retry delay of a google.rpc.RetryInfo, in milliseconds. */
function decodeRetryInfo(bytes: Uint8Array): number | undefined {
  const r = new BinaryReader(bytes);
  let delay: number | undefined;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      // google.protobuf.Duration: seconds (1, int64) and nanos (2, int32).
      const d = new BinaryReader(r.bytes());
      let seconds = 0;
      let nanos = 0;
      while (d.pos < d.len) {
        const [f, wt] = d.tag();
        if (f === 1 && wt === WireType.Varint) {
          seconds = Number(d.int64());
        } else if (f === 2 && wt === WireType.Varint) {
          nanos = d.int32();
        } else {
          d.skip(wt, f);
        }
      }
      delay = Math.max(0, seconds * 1000 + Math.ceil(nanos / 1e6));
    } else {
      r.skip(wireType, field);
    }
  }
  return delay;
}

/**
 * Returns the reason Parley gives for an error (the google.rpc.ErrorInfo
 * detail of domain "parley.dev" it attaches to every error), such as
 * "ORIGIN_NOT_ALLOWED", "TOKEN_EXPIRED" or "RATE_LIMITED": stable
 * UPPER_SNAKE_CASE strings to branch on, unlike the messages. Undefined for
 * anything else, such as a network failure.
 */
export function errorReason(err: unknown): string | undefined {
  for (const d of incomingDetails(err)) {
    if (d.type !== errorInfoType) {
      continue;
    }
    try {
      const info = decodeErrorInfo(d.value);
      if (info.domain === errorDomain && info.reason !== "") {
        return info.reason;
      }
    } catch {
      // A malformed detail is no reason.
    }
  }
  return undefined;
}

/**
 * Returns how long the server asks the caller to wait before trying again
 * (its google.rpc.RetryInfo detail), in milliseconds, as on a rate limit or
 * an overloaded server; undefined when the error carries no such hint.
 */
export function retryDelayMs(err: unknown): number | undefined {
  for (const d of incomingDetails(err)) {
    if (d.type !== retryInfoType) {
      continue;
    }
    try {
      const delay = decodeRetryInfo(d.value);
      if (delay !== undefined) {
        return delay;
      }
    } catch {
      // A malformed detail is no hint.
    }
  }
  return undefined;
}

/**
 * Tells whether the same call is worth making again later (after
 * {@link retryDelayMs} if the error has it, otherwise after a backoff): the
 * server was unavailable, a deadline passed, the server asked for a retry
 * (RetryInfo, as on a rate limit), or the request or response was lost on
 * the way (the network dropped, a proxy failed). Writes are safe to retry
 * with the same request id or client message id. Errors the caller must
 * act on (InvalidArgument, PermissionDenied, Unauthenticated, NotFound...)
 * and a call the caller cancelled are not retryable.
 */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof ConnectError)) {
    return false;
  }
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Aborted:
      return true;
    case Code.Unknown:
      // Not an answer from the server: the connection failed or broke.
      return !err.isWireError;
    case Code.Canceled:
      return false;
  }
  return retryDelayMs(err) !== undefined;
}
