package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// CookieName is the name of the console's session cookie.
const CookieName = "keygate_console"

// session is one signed-in browser. It never holds a key's value: a key
// sign-in keeps the token's SHA-256 hash, which the console looks up in
// the store on every request (so a revoked, expired or narrowed key
// stops, or narrows, the session at once); an identity sign-in keeps the
// identity, mapped to its account on every request.
type session struct {
	// tokenHash is set for a key sign-in.
	tokenHash *token.Hash
	// identity is set for a trusted identity sign-in.
	identity string
	// csrf is the token every write of the session must carry.
	csrf    string
	expires time.Time
}

// sessions holds the sessions of one console, in memory, by the SHA-256
// of the cookie's value (so not even a memory dump of the map gives a
// cookie). They do not survive a restart and are not shared between
// nodes: behind a load balancer, route a browser to one node (sticky) or
// sign in again on another.
type sessions struct {
	ttl time.Duration
	max int

	mu   sync.Mutex
	byID map[[32]byte]*session
	now  func() time.Time
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{ttl: ttl, max: max, byID: map[[32]byte]*session{}, now: time.Now}
}

// randomToken returns 32 random bytes in base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session s and returns the cookie's value.
func (ss *sessions) create(s *session) string {
	id := randomToken()
	s.csrf = randomToken()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	s.expires = now.Add(ss.ttl)
	if len(ss.byID) >= ss.max {
		ss.prune(now)
	}
	ss.byID[sha256.Sum256([]byte(id))] = s
	return id
}

// prune drops expired sessions, then (still full) the one nearest its
// end. ss.mu is held.
func (ss *sessions) prune(now time.Time) {
	var oldest [32]byte
	var oldestAt time.Time
	for k, s := range ss.byID {
		if !now.Before(s.expires) {
			delete(ss.byID, k)
			continue
		}
		if oldestAt.IsZero() || s.expires.Before(oldestAt) {
			oldest, oldestAt = k, s.expires
		}
	}
	if len(ss.byID) >= ss.max {
		delete(ss.byID, oldest)
	}
}

// get returns the live session of the request's cookie, if any.
func (ss *sessions) get(r *http.Request) (*session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(c.Value))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byID[k]
	if !ok {
		return nil, false
	}
	if !ss.now().Before(s.expires) {
		delete(ss.byID, k)
		return nil, false
	}
	return s, true
}

// end drops the request's session, if any.
func (ss *sessions) end(r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		ss.mu.Lock()
		delete(ss.byID, sha256.Sum256([]byte(c.Value)))
		ss.mu.Unlock()
	}
}

// validCSRF reports whether v is the session's CSRF token.
func (s *session) validCSRF(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(s.csrf)) == 1
}

// setCookie sets the session cookie (value "" with maxAge < 0 clears it):
// HttpOnly, Secure, SameSite=Strict, scoped to the console's path.
func setCookie(w http.ResponseWriter, base, value string, maxAge int) {
	path := base
	if path == "" {
		path = "/"
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}
