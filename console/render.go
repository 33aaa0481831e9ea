package console

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/storage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages are the console's templates, each the layout with one page's
// "content".
var pages = parsePages()

var funcs = template.FuncMap{
	"inputTime": inputTime,
	"time": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return "—"
	},
	"join": func(s []string) string {
		if len(s) == 0 {
			return "—"
		}
		return strings.Join(s, ", ")
	},
	"tags": func(m map[string]string) string {
		var b []string
		for k, v := range m {
			b = append(b, k+"="+v)
		}
		slices.Sort(b)
		return strings.Join(b, ", ")
	},
}

func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimPrefix(name, "templates/")
		if base == "layout.html" {
			continue
		}
		out[strings.TrimSuffix(base, ".html")] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, name))
	}
	return out
}

// view is what every page's template gets.
type view struct {
	Title string
	Base  string
	// CSRF is the session's token, for forms.
	CSRF string
	// Caller is the signed-in person; nil on the sign-in pages.
	Caller *caller
	// Notice is a line shown above the page; Error an API error.
	Notice string
	Error  *formError
	// Data is the page's own.
	Data any
}

// formError is an error the API answered, as a form shows it.
type formError struct {
	Message string
	// Field is the API's field at fault, if any.
	Field string
}

// errorOf renders err for a form: the API's message and field, or a
// generic line for what is not the API's answer.
func errorOf(err error) *formError {
	var e *client.Error
	if errors.As(err, &e) {
		msg := e.Message
		if msg == "" {
			msg = http.StatusText(e.Status)
		}
		return &formError{Message: msg, Field: e.Field}
	}
	return &formError{Message: "The key store could not answer; try again."}
}

// statusOf is the HTTP status to answer for an API error.
func statusOf(err error) int {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusServiceUnavailable
}

// render writes page name with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	v.Base = mountOf(r).Base
	if v.Caller != nil {
		v.CSRF = v.Caller.sess.csrf
	}
	var buf bytes.Buffer
	if err := pages[name].Execute(&buf, v); err != nil {
		c.logger.Error("console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message renders a page with only a title and a line.
func (c *Console) message(w http.ResponseWriter, r *http.Request, status int, cl *caller, title, line string) {
	c.render(w, r, status, "message", view{Title: title, Caller: cl, Data: line})
}

func (c *Console) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", storage.UnavailableRetryAfter)
	c.message(w, r, http.StatusServiceUnavailable, nil, "Unavailable", "The key store is not available right now; try again in a moment.")
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, line string) {
	c.message(w, r, http.StatusForbidden, nil, "Refused", line)
}

// noAccount is the page of a trusted identity that maps to no usable
// account: it names the identity and nothing else.
func (c *Console) noAccount(w http.ResponseWriter, r *http.Request, err error) {
	line := "You are signed in as " + mountOf(r).Identity + ", but no account has that name, so there is nothing for you here. Ask the operator to create an account named " + mountOf(r).Identity + "."
	if !errors.Is(err, storage.ErrNoAccount) {
		c.unavailable(w, r)
		return
	}
	if strings.Contains(err.Error(), "disabled") {
		line = "You are signed in as " + mountOf(r).Identity + ", but that account is disabled."
	}
	c.render(w, r, http.StatusForbidden, "noaccount", view{Title: "No account", Data: line})
}

// apiFailed renders the page of a read the API refused or could not do.
func (c *Console) apiFailed(w http.ResponseWriter, r *http.Request, cl *caller, err error) {
	status := statusOf(err)
	title := "Error"
	switch status {
	case http.StatusNotFound:
		title = "Not found"
	case http.StatusForbidden:
		title = "Not allowed"
	}
	c.message(w, r, status, cl, title, errorOf(err).Message)
}

// serveStatic serves the embedded stylesheet and script.
func serveStatic() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
}
