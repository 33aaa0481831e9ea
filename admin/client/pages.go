package client

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"

	"github.com/keygate/keygate/admin"
)

// ListOptions selects one page of a list.
type ListOptions struct {
	// Limit is the page size; 0: the API's default.
	Limit int
	// After is the "next" cursor of the page before; empty: the first.
	After string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	return q
}

// each yields the items of every page fetch returns, following "next"
// from after; it stops at the first error, which it yields.
func each[T any](ctx context.Context, after string, fetch func(ctx context.Context, after string) (*admin.List[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		seen := map[string]bool{}
		for {
			page, err := fetch(ctx, after)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range page.Items {
				if !yield(item, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			if seen[page.Next] {
				var zero T
				yield(zero, fmt.Errorf("the API returned the page cursor %q twice", page.Next))
				return
			}
			seen[page.Next] = true
			after = page.Next
		}
	}
}

// Collect returns the items of seq, or its first error.
func Collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	out := []T{}
	for item, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, nil
}
