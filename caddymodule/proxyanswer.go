package caddymodule

import (
	"bytes"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// The rule of this file: a refusal reaches the client through the proxy
// with its status, headers and body, however the proxy reads answers.
// Caddy's forward_auth, Traefik and Envoy pass a non-2xx answer on as it
// is. nginx's auth_request passes on only 401 and 403, without their
// bodies, and turns any other status into a 500; so in nginx mode every
// refusal also carries its real status (X-Keygate-Status) and its JSON
// body on one line (X-Keygate-Error), a status other than 401 or 403 is
// sent as 403, and the README's error_page location restores all three,
// with Retry-After and the other headers the refusal set. This holds for
// any refusal written through proxyWriter, whatever its status.

// Headers of nginx mode's refusals.
const (
	headerKeygateStatus = "X-Keygate-Status"
	headerKeygateError  = "X-Keygate-Error"
)

// proxyWriter returns the writer through which a refusal is answered in
// the handler's mode: w itself, or in nginx mode an nginxWriter, whose
// finish must be called once the refusal is written.
func (v *VerifyHandler) proxyWriter(w http.ResponseWriter) http.ResponseWriter {
	if v.mode == ModeNginx {
		return &nginxWriter{ResponseWriter: w}
	}
	return w
}

// nginxWriter holds a refusal's status and body until finish sends them
// as nginx's auth_request can pass them on. Headers go to the underlying
// writer as they are set.
type nginxWriter struct {
	http.ResponseWriter
	status int
	body   []byte
}

// WriteHeader records the status.
func (nw *nginxWriter) WriteHeader(status int) {
	if nw.status == 0 {
		nw.status = status
	}
}

// Write holds the body.
func (nw *nginxWriter) Write(p []byte) (int, error) {
	if nw.status == 0 {
		nw.status = http.StatusOK
	}
	nw.body = append(nw.body, p...)
	return len(p), nil
}

// finish sends the answer: a 2xx as it is; a refusal with
// X-Keygate-Status and X-Keygate-Error, as a 403 unless it is a 401 or a
// 403.
func (nw *nginxWriter) finish() {
	status := nw.status
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 299 {
		h := nw.Header()
		h[headerKeygateStatus] = []string{strconv.Itoa(status)}
		if line := bytes.TrimRight(nw.body, "\r\n"); httpguts.ValidHeaderFieldValue(string(line)) && !bytes.ContainsAny(line, "\r\n") {
			h[headerKeygateError] = []string{string(line)}
		}
		if status != http.StatusUnauthorized && status != http.StatusForbidden {
			status = http.StatusForbidden
		}
	}
	nw.ResponseWriter.WriteHeader(status)
	_, _ = nw.ResponseWriter.Write(nw.body) // a proxy gone away is not the handler's error
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (nw *nginxWriter) Unwrap() http.ResponseWriter { return nw.ResponseWriter }
