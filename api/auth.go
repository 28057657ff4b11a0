package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Scopes a token may carry.
const (
	ScopeEventsWrite = "events:write" // POST /v1/events
	ScopeRead        = "read"         // the queries
	ScopeReports     = "reports"      // evidence packs
	// ScopeFindingsWrite acknowledges and suppresses findings and runs the analyzers (reading
	// findings needs only read).
	ScopeFindingsWrite = "findings:write"
	ScopeAdmin         = "admin" // everything, dead letters included
)

var knownScopes = []string{ScopeEventsWrite, ScopeRead, ScopeReports, ScopeFindingsWrite, ScopeAdmin}

// Token is an API token as the configuration keeps it: never the secret, only its SHA-256.
type Token struct {
	// Name identifies the caller in logs and in whocould's own audit events ("token:NAME").
	Name string `yaml:"name" json:"name"`
	// SHA256 is the hex SHA-256 of the secret (HashToken).
	SHA256 string   `yaml:"sha256" json:"sha256"`
	Scopes []string `yaml:"scopes" json:"scopes"`
}

// HashToken is the SHA-256 of a secret, in hex, as Token.SHA256 keeps it.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// NewSecret makes a random token secret (32 bytes, hex, prefixed "wc_").
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "wc_" + hex.EncodeToString(b)
}

// Validate reports a token that cannot work, naming it.
func (t Token) Validate() error {
	if t.Name == "" || strings.ContainsAny(t.Name, " \t\r\n:") {
		return fmt.Errorf("token name %q: want a non-empty name without spaces or colons", t.Name)
	}
	if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("token %s: sha256: want 64 hex digits (the SHA-256 of the secret: printf %%s \"$SECRET\" | sha256sum)", t.Name)
	}
	if len(t.Scopes) == 0 {
		return fmt.Errorf("token %s: scopes: none given (want some of %s)", t.Name, strings.Join(knownScopes, ", "))
	}
	for _, s := range t.Scopes {
		if !slices.Contains(knownScopes, s) {
			return fmt.Errorf("token %s: scopes: unknown scope %q (want %s)", t.Name, s, strings.Join(knownScopes, ", "))
		}
	}
	return nil
}

// allows reports whether the token carries scope (admin carries every scope).
func (t *Token) allows(scope string) bool {
	return slices.Contains(t.Scopes, scope) || slices.Contains(t.Scopes, ScopeAdmin)
}

// keyring finds the token of a secret in constant time per token.
type keyring struct {
	tokens []Token
	hashes [][]byte
}

func newKeyring(tokens []Token) (*keyring, error) {
	k := &keyring{}
	seen := map[string]bool{}
	for _, t := range tokens {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("token %s: the name is used twice", t.Name)
		}
		seen[t.Name] = true
		h, _ := hex.DecodeString(t.SHA256)
		k.tokens = append(k.tokens, t)
		k.hashes = append(k.hashes, h)
	}
	return k, nil
}

// find returns the token whose secret this is, or nil.
func (k *keyring) find(secret string) *Token {
	h := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range k.tokens {
		if subtle.ConstantTimeCompare(h[:], k.hashes[i]) == 1 {
			found = &k.tokens[i]
		}
	}
	return found
}
