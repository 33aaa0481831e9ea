package admin

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/storage"
)

// UsageReporter tells the current use of rate windows, for GET
// /keys/{id}: what the gateway's limiter counts, which the key store
// alone does not know (counts reach it in batches).
type UsageReporter interface {
	// WindowUsage returns the use of each of the windows of subject (a
	// key or account id), in the order given: the requests counted in
	// the window now, across nodes as far as this node knows, and when
	// the window resets.
	WindowUsage(ctx context.Context, subject string, windows []storage.Window) []WindowUse
}

// WindowUse is one window's current use, as a UsageReporter tells it.
type WindowUse struct {
	Used     int64
	ResetsAt time.Time
}

type reporterBox struct{ r UsageReporter }

// usage holds the handler's UsageReporter, if any.
type usage struct{ p atomic.Pointer[reporterBox] }

// SetUsageReporter makes GET /keys/{id} show the current use of the key's
// and its account's windows, as r tells it ("usage"); nil stops it.
func (h *Handler) SetUsageReporter(r UsageReporter) {
	if r == nil {
		h.usage.p.Store(nil)
		return
	}
	h.usage.p.Store(&reporterBox{r})
}

// usageOf returns the current use of the windows of key k and of its
// account a, or nil when no reporter is set.
func (h *Handler) usageOf(ctx context.Context, k *storage.Key, a *storage.Account) *Usage {
	box := h.usage.p.Load()
	if box == nil {
		return nil
	}
	return &Usage{
		Windows:        windowUsage(ctx, box.r, k.ID, k.Policy.Limits),
		AccountWindows: windowUsage(ctx, box.r, a.ID, a.Policy.Limits),
	}
}

func windowUsage(ctx context.Context, r UsageReporter, subject string, windows []storage.Window) []WindowUsage {
	out := make([]WindowUsage, len(windows))
	if len(windows) == 0 {
		return out
	}
	uses := r.WindowUsage(ctx, subject, windows)
	for i, w := range windows {
		out[i] = WindowUsage{Name: w.Name, Limit: w.Limit, Window: storage.FormatWindowLength(w.Length)}
		if i < len(uses) {
			out[i].Used, out[i].ResetsAt = uses[i].Used, uses[i].ResetsAt
		}
	}
	return out
}
