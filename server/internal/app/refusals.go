package app

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/grpchealth"

	"github.com/parleyhq/parley/server/internal/apierr"
)

// withRefusals gives a reason to the refusals that Connect's handlers make
// before any interceptor runs, where observe cannot see them, and answers
// them in the caller's protocol (Connect, gRPC or gRPC-Web):
//
//   - a call of a method that a served service lacks (UNKNOWN_METHOD) or of
//     a service that nothing serves (UNKNOWN_SERVICE): Unimplemented,
//     answered here without reaching the interceptors, so credentials do
//     not matter and no policy lookup fails;
//   - an unknown compression (UNSUPPORTED_COMPRESSION), a malformed timeout
//     header (INVALID_TIMEOUT), an unknown Connect protocol version
//     (UNSUPPORTED_PROTOCOL_VERSION) or a Connect GET without its message
//     (MALFORMED_REQUEST): checked here with the rules Connect applies, so
//     the caller gets the same code plus the reason;
//   - a wrong HTTP method (405), content type (415) or HTTP version (505),
//     which Connect answers with a bare status: refusalWriter adds a
//     Connect error body with the reason and keeps the status and its
//     Allow or Accept-Post header.
//
// Requests that are not RPCs (a browser's GET of some page) go on to mux
// untouched. It covers the procedures of server and the health service
// that app mounts on mux beside it.
func withRefusals(server *connect.Server, mux *http.ServeMux) http.Handler {
	rf := &refusals{
		mux:        mux,
		procedures: map[string]procedure{},
		services:   map[string]bool{},
		errors:     connecthttp.NewErrorWriter(),
	}
	add := func(path string, get bool) {
		rf.procedures[path] = procedure{get: get}
		rf.services[path[:strings.LastIndexByte(path, '/')+1]] = true
	}
	for spec := range server.Specs() {
		add(spec.Procedure, spec.StreamType == connect.StreamTypeUnary && spec.IdempotencyLevel == connect.IdempotencyNoSideEffects)
	}
	for _, method := range []string{"Check", "Watch"} {
		add("/"+grpchealth.HealthV1ServiceName+"/"+method, false)
	}
	return rf
}

type refusals struct {
	mux        *http.ServeMux
	procedures map[string]procedure // by path, "/parley.v1.SessionService/StartGuestChat"
	services   map[string]bool      // by path prefix, "/parley.v1.SessionService/"
	errors     *connecthttp.ErrorWriter
}

// procedure is what a served procedure accepts.
type procedure struct {
	// get: Connect GET is allowed (side-effect-free unary methods).
	get bool
}

func (rf *refusals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p, ok := rf.procedures[r.URL.Path]; ok {
		if err := p.check(r); err != nil {
			rf.write(w, r, err)
			return
		}
		rf.mux.ServeHTTP(&refusalWriter{ResponseWriter: w, request: r, errors: rf.errors}, r)
		return
	}
	if service, method, ok := splitProcedure(r.URL.Path); ok {
		if rf.services["/"+service+"/"] {
			rf.write(w, r, apierr.New(connect.CodeUnimplemented, "UNKNOWN_METHOD",
				fmt.Sprintf("%s has no method %q; server reflection lists the methods this server serves", service, method)))
			return
		}
		if !rf.routed(r) {
			rf.write(w, r, apierr.New(connect.CodeUnimplemented, "UNKNOWN_SERVICE",
				fmt.Sprintf("this server does not serve %s; server reflection lists the services it serves", service)))
			return
		}
	}
	rf.mux.ServeHTTP(w, r)
}

// rpcPath matches the paths of RPCs: "/package.Service" then anything.
var rpcPath = regexp.MustCompile(`^/((?:[A-Za-z_][A-Za-z0-9_]*\.)+[A-Z][A-Za-z0-9_]*)(?:/(.*))?$`)

// splitProcedure splits a path shaped like an RPC's, "/package.Service/Method",
// into its service and the rest (which need not be a method name).
func splitProcedure(path string) (service, method string, ok bool) {
	m := rpcPath.FindStringSubmatch(path)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// isRPC tells whether r is shaped like a Connect, gRPC or gRPC-Web call.
func (rf *refusals) isRPC(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost:
		return rf.errors.IsSupported(r)
	case http.MethodGet:
		return r.URL.Query().Get("connect") == "v1"
	}
	return false
}

// routed tells whether mux has a handler for r other than a catch-all.
func (rf *refusals) routed(r *http.Request) bool {
	_, pattern := rf.mux.Handler(r)
	return pattern != "" && !strings.HasSuffix(" "+pattern, " /")
}

// write answers r with err in r's protocol, or, for a request of no known
// protocol (another HTTP method, a GET without connect=v1), as a Connect
// unary error (JSON).
func (rf *refusals) write(w http.ResponseWriter, r *http.Request, err *connect.Error) {
	if v := r.Header.Get(headerConnectVersion); v != "" && v != "1" {
		// The error writer recognizes only version 1; answer in the
		// protocol the content type names all the same.
		r = r.Clone(r.Context())
		r.Header.Del(headerConnectVersion)
	}
	if !rf.isRPC(r) {
		r = &http.Request{Method: http.MethodPost, Header: http.Header{}}
	}
	_ = rf.errors.Write(w, r, err)
}

const (
	headerConnectVersion = "Connect-Protocol-Version"
	headerConnectTimeout = "Connect-Timeout-Ms"
	headerGRPCTimeout    = "Grpc-Timeout"
)

// check refuses what Connect would refuse before the interceptors run,
// with Connect's code and rules: the request's compression, protocol
// version, GET message and timeout header. It leaves wrong methods and
// content types to Connect (refusalWriter words them).
func (p procedure) check(r *http.Request) *connect.Error {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		if !p.get {
			return nil
		}
	default:
		return nil
	}
	contentType := strings.ToLower(r.Header.Get("Content-Type"))
	if strings.HasPrefix(contentType, "application/grpc") { // gRPC and gRPC-Web
		if err := checkCompression(r.Header.Get("Grpc-Encoding")); err != nil {
			return err
		}
		if timeout := r.Header.Get(headerGRPCTimeout); !validGRPCTimeout(timeout) {
			return apierr.New(connect.CodeInvalidArgument, "INVALID_TIMEOUT",
				fmt.Sprintf("invalid %s %q: want at most 8 digits and a unit (H, M, S, m, u or n)", headerGRPCTimeout, timeout))
		}
		return nil
	}
	if r.Method == http.MethodGet {
		query := r.URL.Query()
		if err := checkCompression(query.Get("compression")); err != nil {
			return err
		}
		if v := query.Get("connect"); v != "" && v != "v1" {
			return apierr.New(connect.CodeInvalidArgument, "UNSUPPORTED_PROTOCOL_VERSION",
				fmt.Sprintf("unsupported connect=%q query parameter: this server speaks connect=v1", v))
		}
		if encoding := query.Get("encoding"); (encoding == "proto" || encoding == "json") && !query.Has("message") {
			return apierr.New(connect.CodeInvalidArgument, "MALFORMED_REQUEST",
				"a Connect GET call carries its request in the message query parameter, which is missing")
		}
	} else {
		encodingHeader := "Content-Encoding"
		if strings.HasPrefix(contentType, "application/connect+") {
			encodingHeader = "Connect-Content-Encoding"
		}
		if err := checkCompression(r.Header.Get(encodingHeader)); err != nil {
			return err
		}
		if v := r.Header.Get(headerConnectVersion); v != "" && v != "1" {
			return apierr.New(connect.CodeInvalidArgument, "UNSUPPORTED_PROTOCOL_VERSION",
				fmt.Sprintf("unsupported %s %q: this server speaks version 1", headerConnectVersion, v))
		}
	}
	if timeout := r.Header.Get(headerConnectTimeout); !validConnectTimeout(timeout) {
		return apierr.New(connect.CodeInvalidArgument, "INVALID_TIMEOUT",
			fmt.Sprintf("invalid %s %q: want a whole number of milliseconds, at most 10 digits", headerConnectTimeout, timeout))
	}
	return nil
}

// checkCompression refuses a request compressed with anything but gzip,
// the one compressor the handlers have (Connect's default).
func checkCompression(name string) *connect.Error {
	switch name {
	case "", connect.CompressionNameIdentity, connect.CompressionNameGzip:
		return nil
	}
	return apierr.New(connect.CodeUnimplemented, "UNSUPPORTED_COMPRESSION",
		fmt.Sprintf("unknown compression %q: send the request uncompressed or gzipped", name))
}

// validConnectTimeout follows connect-go's parsing of Connect-Timeout-Ms.
func validConnectTimeout(timeout string) bool {
	if timeout == "" {
		return true
	}
	millis, err := strconv.ParseInt(timeout, 10, 64)
	return len(timeout) <= 10 && err == nil && millis >= 0
}

// validGRPCTimeout follows connect-go's parsing of Grpc-Timeout.
func validGRPCTimeout(timeout string) bool {
	if timeout == "" {
		return true
	}
	if !strings.ContainsRune("HMSmun", rune(timeout[len(timeout)-1])) {
		return false
	}
	n, err := strconv.ParseInt(timeout[:len(timeout)-1], 10, 64)
	return err == nil && n >= 0 && n <= 99999999
}

// refusalWriter turns the bare 405, 415 and 505 that Connect's handlers
// answer before reading a request into Connect errors with a reason, keeping
// the status and the headers Connect set (Allow, Accept-Post). Every other
// response passes through.
type refusalWriter struct {
	http.ResponseWriter
	request *http.Request
	errors  *connecthttp.ErrorWriter
	started bool // a status or body went out
	refused bool // this writer answered; drop what follows
}

func (w *refusalWriter) WriteHeader(status int) {
	if w.refused {
		return
	}
	if !w.started {
		w.started = true
		if err := statusRefusal(w.request, w.Header(), status); err != nil {
			w.refused = true
			// A request of no known protocol gets a Connect unary error
			// (JSON), the only body these statuses can carry.
			_ = w.errors.Write(fixedStatus{w.ResponseWriter, status}, &http.Request{Method: http.MethodPost, Header: http.Header{}}, err)
			return
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	if w.refused {
		return len(p), nil
	}
	w.started = true
	return w.ResponseWriter.Write(p)
}

// Flush lets server streams flush through the writer.
func (w *refusalWriter) Flush() {
	if w.refused {
		return
	}
	w.started = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusRefusal is the error for a bare refusal status, or nil.
func statusRefusal(r *http.Request, header http.Header, status int) *connect.Error {
	switch status {
	case http.StatusMethodNotAllowed:
		return apierr.New(connect.CodeUnimplemented, "HTTP_METHOD_NOT_ALLOWED",
			fmt.Sprintf("HTTP method %s is not allowed for %s; allowed: %s (GET only for methods without side effects)", r.Method, r.URL.Path, header.Get("Allow")))
	case http.StatusUnsupportedMediaType:
		if r.Method == http.MethodGet {
			return apierr.New(connect.CodeUnimplemented, "UNSUPPORTED_MEDIA_TYPE",
				"a Connect GET call needs encoding=proto or encoding=json and the message in the query, and no body")
		}
		return apierr.New(connect.CodeUnimplemented, "UNSUPPORTED_MEDIA_TYPE",
			fmt.Sprintf("unsupported Content-Type %q for %s; send one of: %s", r.Header.Get("Content-Type"), r.URL.Path, header.Get("Accept-Post")))
	case http.StatusHTTPVersionNotSupported:
		return apierr.New(connect.CodeUnimplemented, "HTTP2_REQUIRED",
			fmt.Sprintf("%s streams both ways and needs HTTP/2", r.URL.Path))
	}
	return nil
}

// fixedStatus writes status whatever WriteHeader is asked for.
type fixedStatus struct {
	http.ResponseWriter
	status int
}

func (f fixedStatus) WriteHeader(int) { f.ResponseWriter.WriteHeader(f.status) }
