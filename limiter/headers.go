package limiter

import (
	"strconv"
	"time"

	"github.com/keygate/keygate/storage"
)

// The RateLimit-Policy and RateLimit fields follow
// draft-ietf-httpapi-ratelimit-headers-11 (May 2026), sections 3 and 4:
// each is a List (RFC 9651) of Items whose value is the policy's name as a
// String, with the parameters
//
//	RateLimit-Policy: "burst";q=20;w=1, "day";q=10000;w=86400
//	RateLimit: "burst";r=0;t=1, "day";r=9999;t=41000
//
// q is the quota, w the window in seconds (a positive Integer, so it is
// left out for a window that is not a whole number of seconds), r the
// quota available and t the seconds within which the client can use no
// more than r. The default quota unit ("requests") is meant, so qu is not
// sent. A window of the key's account is named AccountPrefix + its name,
// so that it cannot be mistaken for a key's window of the same name.

// AccountPrefix starts the header name of an account's window.
const AccountPrefix = "account."

// maxSFInteger is the largest Integer RFC 9651 serialises (15 digits).
const maxSFInteger = 999_999_999_999_999

// AppendPolicy appends the RateLimit-Policy field value for d's windows to
// dst. It appends nothing when no window applies; a handler then sends no
// field (the List must not be empty).
func AppendPolicy(dst []byte, d *Decision) []byte {
	for i, w := range d.Windows() {
		dst = appendPolicyItem(dst, i, &w)
	}
	return dst
}

// AppendPolicyOf appends the RateLimit-Policy field value of a key's and
// its account's windows: what AppendPolicy appends for every decision on
// them, so a caller may format it once per policy.
func AppendPolicyOf(dst []byte, keyLimits, accountLimits []storage.Window) []byte {
	i := 0
	for _, limits := range [2][]storage.Window{keyLimits, accountLimits} {
		for _, w := range limits {
			ws := WindowStatus{Name: w.Name, Account: i >= len(keyLimits), Limit: w.Limit, Length: w.Length}
			dst = appendPolicyItem(dst, i, &ws)
			i++
		}
	}
	return dst
}

// appendPolicyItem appends the i-th item of a RateLimit-Policy value.
func appendPolicyItem(dst []byte, i int, w *WindowStatus) []byte {
	if i > 0 {
		dst = append(dst, ", "...)
	}
	dst = appendName(dst, w)
	dst = append(dst, ";q="...)
	dst = appendInt(dst, w.Limit)
	if w.Length >= time.Second && w.Length%time.Second == 0 {
		dst = append(dst, ";w="...)
		dst = appendInt(dst, int64(w.Length/time.Second))
	}
	return dst
}

// AppendRateLimit appends the RateLimit field value for d's windows to dst,
// or nothing when no window applies.
func AppendRateLimit(dst []byte, d *Decision) []byte {
	for i, w := range d.Windows() {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendName(dst, &w)
		dst = append(dst, ";r="...)
		dst = appendInt(dst, w.Remaining)
		dst = append(dst, ";t="...)
		dst = appendInt(dst, Seconds(w.Reset))
	}
	return dst
}

// RateLimitFormat formats the RateLimit field of one key's and its
// account's windows, with each item's name and parameter key made once
// (NewRateLimitFormat) so that a request formats only its two numbers.
// The zero value formats as AppendRateLimit does.
type RateLimitFormat struct {
	prefixes []string // `"name";r=` per window, in Decision.Windows order
}

// NewRateLimitFormat prepares the RateLimit field of the windows a
// decision on keyLimits and accountLimits reports (windows of no length
// are never decided on, so they are left out).
func NewRateLimitFormat(keyLimits, accountLimits []storage.Window) RateLimitFormat {
	var f RateLimitFormat
	for i, limits := range [2][]storage.Window{keyLimits, accountLimits} {
		for _, w := range limits {
			if w.Length <= 0 {
				continue
			}
			ws := WindowStatus{Name: w.Name, Account: i == 1}
			f.prefixes = append(f.prefixes, string(append(appendName(nil, &ws), ";r="...)))
		}
	}
	return f
}

// Append appends the RateLimit field value for d, a decision on the
// windows f was made for, to dst; for other windows it appends what
// AppendRateLimit does.
func (f *RateLimitFormat) Append(dst []byte, d *Decision) []byte {
	ws := d.Windows()
	if len(ws) != len(f.prefixes) {
		return AppendRateLimit(dst, d)
	}
	for i := range ws {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, f.prefixes[i]...)
		dst = appendInt(dst, ws[i].Remaining)
		dst = append(dst, ";t="...)
		dst = appendInt(dst, Seconds(ws[i].Reset))
	}
	return dst
}

// AppendRetryAfter appends the Retry-After field value (delay-seconds) for
// d, or nothing when d has no retry time.
func AppendRetryAfter(dst []byte, d *Decision) []byte {
	if d.RetryAfter <= 0 {
		return dst
	}
	return appendInt(dst, Seconds(d.RetryAfter))
}

// Seconds rounds a positive duration up to whole seconds (at least 1), as
// delay-seconds and the t parameter count them; it is 0 for d ≤ 0.
func Seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func appendInt(dst []byte, n int64) []byte {
	return strconv.AppendInt(dst, min(max(n, 0), maxSFInteger), 10)
}

// appendName appends the window's name as an RFC 9651 String: printable
// ASCII, with `"` and `\` escaped; any other byte becomes "?" (the
// keystore's rule for names keeps them printable, this only guarantees a
// well-formed field).
func appendName(dst []byte, w *WindowStatus) []byte {
	dst = append(dst, '"')
	if w.Account {
		dst = append(dst, AccountPrefix...)
	}
	for i := 0; i < len(w.Name); i++ {
		switch c := w.Name[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
