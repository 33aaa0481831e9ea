// Command authsvc is the fair peer of apikey_auth in the load benchmark: an
// external auth service for Caddy's forward_auth, as teams write them. It
// holds the same keys as Keygate's store, in memory (a map from the SHA-256
// of each token to its account and scopes, loaded from a Keygate export),
// checks the key in X-API-Key and the scope named in the query, and answers
// 200 with X-Account-Id, 401 or 403. Nothing in it is slowed on purpose.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
)

// grant is what one token holds.
type grant struct {
	account string
	scopes  []string
}

// record is the part of a Keygate export line the service needs.
type record struct {
	Type string `json:"type"`
	Key  *struct {
		ID        string   `json:"id"`
		AccountID string   `json:"account"`
		Scopes    []string `json:"scopes"`
	} `json:"key"`
	Token *struct {
		KeyID string `json:"key"`
		Hash  []byte `json:"hash"`
	} `json:"token"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9100", "listen address")
	keys := flag.String("keys", "", "Keygate export (JSON Lines) to load")
	flag.Parse()
	grants, err := load(*keys)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("authsvc: %d tokens on %s", len(grants), *addr)
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get("X-API-Key")
		if token == "" {
			http.Error(w, "an API key is required", http.StatusUnauthorized)
			return
		}
		g, ok := grants[sha256.Sum256([]byte(token))]
		if !ok {
			http.Error(w, "the API key is not valid", http.StatusUnauthorized)
			return
		}
		if need := r.URL.Query().Get("scope"); !covers(g.scopes, need) {
			http.Error(w, "the API key lacks the scope "+need, http.StatusForbidden)
			return
		}
		w.Header().Set("X-Account-Id", g.account)
		w.WriteHeader(http.StatusOK)
	})))
}

// load reads the tokens and their keys' scopes from an export.
func load(path string) (map[[32]byte]grant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := map[string]grant{}
	grants := map[[32]byte]grant{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		switch {
		case rec.Key != nil:
			keys[rec.Key.ID] = grant{account: rec.Key.AccountID, scopes: rec.Key.Scopes}
		case rec.Token != nil:
			if len(rec.Token.Hash) != sha256.Size {
				return nil, fmt.Errorf("%s line %d: a token hash of %d bytes", path, line, len(rec.Token.Hash))
			}
			grants[[32]byte(rec.Token.Hash)] = keys[rec.Token.KeyID]
		}
	}
	return grants, sc.Err()
}

// covers reports whether scopes hold need: "*", need itself or a prefix of
// it ending at a ':' boundary, as Keygate's scopes do.
func covers(scopes []string, need string) bool {
	for _, s := range scopes {
		if s == "*" || s == need || strings.HasPrefix(need, s+":") {
			return true
		}
	}
	return false
}
