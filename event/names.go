package event

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen bounds every id, action and resource: longer ones are bad input.
const MaxIDLen = 1024

// Kind is what an id names.
type Kind int

// The kinds of id.
const (
	KindPrincipal Kind = iota
	KindGroup
	KindRole
)

func (k Kind) String() string {
	switch k {
	case KindGroup:
		return "group"
	case KindRole:
		return "role"
	}
	return "principal"
}

// KindOf is the kind of a well-formed id: kinds `group` and `team` are groups, `role` is a role,
// every other kind is a principal.
func KindOf(id string) Kind {
	k, _, _ := strings.Cut(id, ":")
	switch k {
	case "group", "team":
		return KindGroup
	case "role":
		return KindRole
	}
	return KindPrincipal
}

var errEmpty = errors.New("is empty")

// checkText rejects what no id, action or resource may hold: invalid UTF-8, control or space
// characters, and more than MaxIDLen bytes.
func checkText(s string) error {
	if s == "" {
		return errEmpty
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("is %d bytes long (at most %d)", len(s), MaxIDLen)
	}
	if plainASCII(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("has a forbidden character %q at byte %d", r, i)
		}
	}
	return nil
}

// CheckID checks that id has the form `kind:name`: kind is lower-case ASCII letters, digits, `-`
// and `_`, starting with a letter; name is non-empty text without spaces or control characters.
func CheckID(id string) error {
	if err := checkText(id); err != nil {
		return err
	}
	kind, name, ok := strings.Cut(id, ":")
	if !ok {
		return errors.New("has no kind (want kind:name)")
	}
	if err := checkKind(kind); err != nil {
		return err
	}
	if name == "" {
		return errors.New("has an empty name (want kind:name)")
	}
	return nil
}

func checkKind(kind string) error {
	if kind == "" {
		return errors.New("has an empty kind (want kind:name)")
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		letter := c >= 'a' && c <= 'z'
		if !(letter || (i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_'))) {
			return fmt.Errorf("has a bad kind %q (lower-case letters, digits, - and _)", kind)
		}
	}
	return nil
}

// CheckIDOfKind checks id and that it names a k.
func CheckIDOfKind(id string, k Kind) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if got := KindOf(id); got != k {
		return fmt.Errorf("names a %s, not a %s", got, k)
	}
	return nil
}

// CheckAction checks an action pattern: `*`, `prefix.*`, or a plain action.
func CheckAction(a string) error {
	if err := checkText(a); err != nil {
		return err
	}
	if i := strings.IndexByte(a, '*'); i >= 0 && !(a == "*" || (i == len(a)-1 && strings.HasSuffix(a, ".*"))) {
		return errors.New("has * somewhere other than a final `.*` (or is not `*` alone)")
	}
	return nil
}

// CheckResource checks a resource: `*`, `kind:*`, or `kind:path` whose path has no empty
// segment.
func CheckResource(r string) error {
	if err := checkText(r); err != nil {
		return err
	}
	if r == "*" {
		return nil
	}
	kind, path, ok := strings.Cut(r, ":")
	if !ok {
		return errors.New("has no kind (want kind:path, kind:* or *)")
	}
	if err := checkKind(kind); err != nil {
		return err
	}
	if path == "*" {
		return nil
	}
	// An empty segment: as strings.Split(path, "/") would find one.
	if path == "" || path[0] == '/' || path[len(path)-1] == '/' || strings.Contains(path, "//") {
		return errors.New("has an empty path segment")
	}
	return nil
}

// plainASCII reports whether s is printable ASCII without spaces ('!' through '~'): text no
// check of ids, actions, resources or free text finds anything wrong with.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// Matches reports whether action pattern p matches action a: `*` matches every action; a pattern
// ending in `.*` every action that starts with the part before `*`; any other pattern only
// itself. Case matters.
func Matches(p, a string) bool {
	if p == "*" {
		return true
	}
	if strings.HasSuffix(p, ".*") {
		return strings.HasPrefix(a, p[:len(p)-1])
	}
	return p == a
}

// Covers reports whether a grant on resource g applies to resource r: `*` covers everything,
// `kind:*` every resource of that kind, and `kind:path` itself and everything below it, in whole
// segments.
func Covers(g, r string) bool {
	if g == "*" || g == r {
		return true
	}
	if kind, ok := strings.CutSuffix(g, ":*"); ok {
		rk, _, _ := strings.Cut(r, ":")
		return rk == kind
	}
	return len(r) > len(g) && r[len(g)] == '/' && strings.HasPrefix(r, g)
}

// Ancestors lists every resource that covers r, r first, then its parents nearest first, then
// `kind:*` and `*`: a grant on g applies to r exactly when g is in Ancestors(r).
func Ancestors(r string) []string {
	if r == "*" {
		return []string{"*"}
	}
	out := []string{r}
	kind, path, _ := strings.Cut(r, ":")
	if path != "*" {
		for i := len(path) - 1; i > 0; i-- {
			if path[i] == '/' {
				out = append(out, kind+":"+path[:i])
			}
		}
		out = append(out, kind+":*")
	}
	return append(out, "*")
}
