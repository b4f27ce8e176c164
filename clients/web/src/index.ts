// @parleyhq/parley-web: the TypeScript client of Parley for browsers and
// Node. Every service behind one constructor (Connect, Connect binary or
// gRPC-Web over fetch), a refreshable token, helpers that read Parley's
// error reasons and retry hints, and streams that resume by themselves.

export {
  DEFAULT_CALL_TIMEOUT_MS,
  bearer,
  callTimeout,
  createParleyClient,
  createParleyTransport,
  type ParleyClient,
  type ParleyClientOptions,
  type TokenSource,
} from "./client.js";
export { errorDomain, errorReason, isRetryable, retryDelayMs } from "./errors.js";
export {
  StreamStalledError,
  followConversation,
  followWork,
  type ResumeOptions,
  type StreamState,
} from "./resume.js";

// Connect's error type and codes, the interceptor type of
// ParleyClientOptions.interceptors, and createClient for
// createParleyTransport, so that callers need no other import.
export { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";

// The messages, enums and service descriptors of Parley's API.
export * from "./gen/parley/v1/resources_pb.js";
export * from "./gen/parley/v1/session_service_pb.js";
export * from "./gen/parley/v1/messaging_service_pb.js";
export * from "./gen/parley/v1/routing_service_pb.js";
export * from "./gen/parley/v1/case_service_pb.js";
export * from "./gen/parley/v1/access_service_pb.js";
export * from "./gen/parley/v1/knowledge_service_pb.js";
export * from "./gen/parley/v1/assistant_service_pb.js";
