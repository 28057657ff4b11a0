package event

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// FieldError is the first problem Validate (or Unmarshal) found in an event. Field is a JSON path
// into the CloudEvent: "id", "time", "type", "data.member", "data.attributes.dept", ...
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fieldErr(field, msg string) *FieldError { return &FieldError{Field: field, Msg: msg} }

// Bounds of what an event may hold beyond MaxIDLen.
const (
	MaxAttributes     = 256  // attributes of a principal
	MaxAttributeKey   = 256  // bytes in an attribute key
	MaxAttributeValue = 4096 // bytes in an attribute value
	MaxTextLen        = 4096 // bytes in free text: reason, policy
	MaxTenantLen      = 128  // bytes in a tenant name
)

// The event times Validate accepts: from 1970 through 2200.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2201, 1, 1, 0, 0, 0, 0, time.UTC) // exclusive
)

// presence says whether a type needs a field.
type presence uint8

const (
	required presence = iota + 1
	optional
	// roleOrAction: exactly one of the fields marked so (role, action) is required.
	roleOrAction
)

// check is how a field's value is checked.
type check uint8

const (
	cPrincipal  check = iota + 1 // an id of principal kind
	cGroup                       // an id of group kind
	cRole                        // an id of role kind
	cMember                      // an id of principal or group kind
	cPattern                     // an action pattern (CheckAction)
	cAction                      // a plain action: a pattern without *
	cResource                    // CheckResource
	cEffect                      // allow or deny
	cToken                       // an opaque reference: request and approval ids
	cText                        // free text
	cTenant                      // a tenant name
	cAttributes                  // {string: string}
	cExpiry                      // an RFC 3339 time after the event's time
	cChange                      // a JSON object
)

// fieldRule is one data field an event type carries. The table of rules is what Validate
// enforces and what the JSON Schema is generated from (see schema_test.go).
type fieldRule struct {
	name  string // JSON name in data
	pres  presence
	check check
}

// Fields every change event may carry, and every event.
var (
	changeCommon = []fieldRule{{"actor", optional, cPrincipal}, {"approval", optional, cToken}}
	allCommon    = []fieldRule{{"tenant", optional, cTenant}}
)

// typeFields are the data fields of each type (DESIGN.md §2), before the common ones.
var typeFields = map[Type][]fieldRule{
	PrincipalCreated:  {{"principal", required, cPrincipal}, {"attributes", optional, cAttributes}},
	PrincipalUpdated:  {{"principal", required, cPrincipal}, {"attributes", optional, cAttributes}},
	PrincipalDisabled: {{"principal", required, cPrincipal}},
	PrincipalEnabled:  {{"principal", required, cPrincipal}},
	PrincipalDeleted:  {{"principal", required, cPrincipal}},

	GroupCreated: {{"group", required, cGroup}},
	GroupDeleted: {{"group", required, cGroup}},

	MembershipAdded:   {{"group", required, cGroup}, {"member", required, cMember}},
	MembershipRemoved: {{"group", required, cGroup}, {"member", required, cMember}},

	RoleCreated:           {{"role", required, cRole}},
	RoleDeleted:           {{"role", required, cRole}},
	RolePermissionAdded:   {{"role", required, cRole}, {"action", required, cPattern}},
	RolePermissionRemoved: {{"role", required, cRole}, {"action", required, cPattern}},
	RoleIncludeAdded:      {{"role", required, cRole}, {"includes", required, cRole}},
	RoleIncludeRemoved:    {{"role", required, cRole}, {"includes", required, cRole}},

	GrantAdded: {{"subject", required, cMember}, {"role", roleOrAction, cRole}, {"action", roleOrAction, cPattern},
		{"resource", required, cResource}, {"expires_at", optional, cExpiry}},
	GrantRemoved: {{"subject", required, cMember}, {"role", roleOrAction, cRole}, {"action", roleOrAction, cPattern},
		{"resource", required, cResource}},

	Decision: {{"principal", required, cPrincipal}, {"action", required, cAction}, {"resource", required, cResource},
		{"effect", required, cEffect}, {"reason", optional, cText}, {"policy", optional, cText}, {"request", optional, cToken}},

	ApprovalRequested: {{"request", required, cToken}, {"requester", required, cPrincipal},
		{"change", optional, cChange}, {"reason", optional, cText}},
	ApprovalGranted:  {{"request", required, cToken}, {"approver", required, cPrincipal}, {"reason", optional, cText}},
	ApprovalRejected: {{"request", required, cToken}, {"approver", required, cPrincipal}, {"reason", optional, cText}},
}

// dataFieldNames are the JSON names of Data's fields, in struct order; bit i of a field mask is
// dataFieldNames[i]. A test keeps it equal to the struct.
var dataFieldNames = [...]string{
	"principal", "attributes", "group", "member", "role", "action", "includes", "subject", "resource",
	"expires_at", "effect", "reason", "policy", "request", "requester", "approver", "change",
	"actor", "approval", "tenant",
}

type fieldMask uint32

var dataFieldBit = func() map[string]fieldMask {
	m := make(map[string]fieldMask, len(dataFieldNames))
	for i, n := range dataFieldNames {
		m[n] = 1 << i
	}
	return m
}()

// setMask is the mask of the fields set (non-empty) in d.
func setMask(d *Data) fieldMask {
	var m fieldMask
	bit := func(i int, set bool) {
		if set {
			m |= 1 << i
		}
	}
	bit(0, d.Principal != "")
	bit(1, len(d.Attributes) > 0)
	bit(2, d.Group != "")
	bit(3, d.Member != "")
	bit(4, d.Role != "")
	bit(5, d.Action != "")
	bit(6, d.Includes != "")
	bit(7, d.Subject != "")
	bit(8, d.Resource != "")
	bit(9, d.ExpiresAt != nil)
	bit(10, d.Effect != "")
	bit(11, d.Reason != "")
	bit(12, d.Policy != "")
	bit(13, d.Request != "")
	bit(14, d.Requester != "")
	bit(15, d.Approver != "")
	bit(16, len(d.Change) > 0)
	bit(17, d.Actor != "")
	bit(18, d.Approval != "")
	bit(19, d.Tenant != "")
	return m
}

// stringField is the value of a string field of d by bit index.
func stringField(d *Data, i int) string {
	switch i {
	case 0:
		return d.Principal
	case 2:
		return d.Group
	case 3:
		return d.Member
	case 4:
		return d.Role
	case 5:
		return d.Action
	case 6:
		return d.Includes
	case 7:
		return d.Subject
	case 8:
		return d.Resource
	case 10:
		return d.Effect
	case 11:
		return d.Reason
	case 12:
		return d.Policy
	case 13:
		return d.Request
	case 14:
		return d.Requester
	case 15:
		return d.Approver
	case 17:
		return d.Actor
	case 18:
		return d.Approval
	case 19:
		return d.Tenant
	}
	return ""
}

// typeSpec is a type's rules, ready for Validate.
type typeSpec struct {
	rules   []fieldRule
	bits    []int // bit index of each rule
	allowed fieldMask
}

// rulesOf lists every data field of type t: its own, then the common ones.
func rulesOf(t Type) []fieldRule {
	own, ok := typeFields[t]
	if !ok {
		return nil
	}
	rules := append([]fieldRule(nil), own...)
	if t.IsChange() {
		rules = append(rules, changeCommon...)
	}
	return append(rules, allCommon...)
}

var specs = func() map[Type]*typeSpec {
	m := make(map[Type]*typeSpec, len(Types))
	for _, t := range Types {
		s := &typeSpec{rules: rulesOf(t)}
		for _, r := range s.rules {
			b, ok := dataFieldBit[r.name]
			if !ok {
				panic("event: rule for unknown data field " + r.name)
			}
			s.allowed |= b
			s.bits = append(s.bits, bitIndex(b))
		}
		m[t] = s
	}
	return m
}()

func bitIndex(b fieldMask) int {
	for i := 0; i < 32; i++ {
		if b == 1<<i {
			return i
		}
	}
	return -1
}

// Validate checks an event: its envelope (id, source, type, time) and exactly the data fields its
// type carries (DESIGN.md §2). It returns a *FieldError for the first problem, nil when the
// event is good.
func Validate(e *Event) error {
	if err := validateEnvelope(e); err != nil {
		return err
	}
	s := specs[e.Type]
	d := &e.Data
	set := setMask(d)
	doneRoleOrAction := false
	for i, r := range s.rules {
		bit := s.bits[i]
		if r.pres == roleOrAction {
			if doneRoleOrAction {
				continue
			}
			doneRoleOrAction = true
			hasRole, hasAction := d.Role != "", d.Action != ""
			switch {
			case hasRole && hasAction:
				return fieldErr("data.action", "a grant names a role or an action, not both")
			case !hasRole && !hasAction:
				return fieldErr("data.role", "is missing (a grant names a role or an action)")
			case hasRole:
				if msg := checkString(cRole, d.Role); msg != "" {
					return fieldErr("data.role", msg)
				}
			default:
				if msg := checkString(cPattern, d.Action); msg != "" {
					return fieldErr("data.action", msg)
				}
			}
			continue
		}
		if set&(1<<bit) == 0 {
			if r.pres == required {
				return fieldErr("data."+r.name, "is missing")
			}
			continue
		}
		if err := checkRule(e, r, bit); err != nil {
			return err
		}
	}
	if extra := set &^ s.allowed; extra != 0 {
		for i, n := range dataFieldNames {
			if extra&(1<<i) != 0 {
				return fieldErr("data."+n, "is not a field of "+string(e.Type)+" events")
			}
		}
	}
	return nil
}

func checkRule(e *Event, r fieldRule, bit int) error {
	d := &e.Data
	switch r.check {
	case cAttributes:
		return checkAttributes(d.Attributes)
	case cExpiry:
		if msg := checkTime(*d.ExpiresAt); msg != "" {
			return fieldErr("data.expires_at", msg)
		}
		if !d.ExpiresAt.After(e.Time) {
			return fieldErr("data.expires_at", "is "+formatTime(*d.ExpiresAt)+", not after the event's time "+formatTime(e.Time))
		}
		return nil
	case cChange:
		if !isJSONObject(d.Change) {
			return fieldErr("data.change", "must be a JSON object")
		}
		return nil
	}
	if msg := checkString(r.check, stringField(d, bit)); msg != "" {
		return fieldErr("data."+r.name, msg)
	}
	return nil
}

// checkString checks the value of a string field; "" when it is good.
func checkString(c check, v string) string {
	var err error
	switch c {
	case cPrincipal:
		err = CheckIDOfKind(v, KindPrincipal)
	case cGroup:
		err = CheckIDOfKind(v, KindGroup)
	case cRole:
		err = CheckIDOfKind(v, KindRole)
	case cMember:
		if err = CheckID(v); err == nil && KindOf(v) == KindRole {
			return "names a role, not a group or principal"
		}
	case cPattern:
		err = CheckAction(v)
	case cAction:
		if err = CheckAction(v); err == nil && strings.IndexByte(v, '*') >= 0 {
			return "is a pattern; a decision names one action, without *"
		}
	case cResource:
		err = CheckResource(v)
	case cToken:
		err = checkText(v)
	case cEffect:
		if v != Allow && v != Deny {
			return "is " + quote(v) + ", want \"allow\" or \"deny\""
		}
		return ""
	case cText:
		return checkFreeText(v, MaxTextLen)
	case cTenant:
		return checkTenant(v)
	}
	if err != nil {
		return err.Error()
	}
	// What CheckID and friends let through: invisible formatting characters (bidi overrides,
	// zero-width characters), which make one id look like another.
	return checkNoFormatChars(v)
}

// The characters each kind of text may not hold (the schema's patterns are made from these).
func isFormat(r rune) bool { return r >= 0x80 && unicode.Is(unicode.Cf, r) }

// badInID: ids, actions, resources, request ids (checkText, then checkNoFormatChars).
func badInID(r rune) bool {
	return unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || isFormat(r)
}

// badInEnvelope: the CloudEvents id (the source is also free of spaces).
func badInEnvelope(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError || isFormat(r) }

// badInText: free text.
func badInText(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r >= 0x7f && r < 0xa0 || isBidiControl(r)
}

// badInAttributeKey: attribute keys.
func badInAttributeKey(r rune) bool { return unicode.IsControl(r) || isFormat(r) }

// checkNoFormatChars rejects Unicode format characters (category Cf) in ids.
func checkNoFormatChars(s string) string {
	if plainASCII(s) {
		return ""
	}
	for i, r := range s {
		if isFormat(r) {
			return fmt.Sprintf("has an invisible formatting character U+%04X at byte %d (bidi controls and zero-width characters are not allowed)", r, i)
		}
	}
	return ""
}

// isBidiControl reports the characters that reorder displayed text.
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

// checkFreeText checks text meant for people (reasons, attribute values): valid UTF-8, at most
// max bytes, no control characters but tab and line breaks, no bidi controls.
func checkFreeText(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("is %d bytes long (at most %d)", len(s), max)
	}
	if plainText(s) {
		return ""
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if badInText(r) {
			if isBidiControl(r) {
				return fmt.Sprintf("has a bidi control character U+%04X at byte %d", r, i)
			}
			return fmt.Sprintf("has a control character %q at byte %d", r, i)
		}
	}
	return ""
}

// plainText reports whether s is printable ASCII, spaces, tabs and line breaks: free text
// checkFreeText finds nothing wrong with.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' && c != '\n' && c != '\r' || c >= 0x7f {
			return false
		}
	}
	return true
}

// checkEnvelopeText checks the CloudEvents id: non-empty, at most MaxIDLen bytes, valid UTF-8,
// no control or formatting characters.
func checkEnvelopeText(s string) string {
	if s == "" {
		return "is missing"
	}
	if len(s) > MaxIDLen {
		return fmt.Sprintf("is %d bytes long (at most %d)", len(s), MaxIDLen)
	}
	if plainASCII(s) {
		return ""
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if badInEnvelope(r) && !isFormat(r) {
			return fmt.Sprintf("has a forbidden character %q at byte %d", r, i)
		}
	}
	return checkNoFormatChars(s)
}

// checkTenant: letters, digits, '.', '_' and '-', starting with a letter or digit.
func checkTenant(s string) string {
	if len(s) > MaxTenantLen {
		return fmt.Sprintf("is %d bytes long (at most %d)", len(s), MaxTenantLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !(alnum || i > 0 && (c == '.' || c == '_' || c == '-')) {
			return "is " + quote(s) + ": a tenant is letters, digits, '.', '_' and '-', starting with a letter or digit"
		}
	}
	return ""
}

func checkAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return fieldErr("data.attributes", fmt.Sprintf("has %d attributes (at most %d)", len(attrs), MaxAttributes))
	}
	for k, v := range attrs {
		if checkAttribute(k, v) != nil {
			// Report the bad attribute with the least key, whatever the map's order.
			keys := make([]string, 0, len(attrs))
			for k := range attrs {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if err := checkAttribute(k, attrs[k]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkAttribute(k, v string) error {
	if msg := checkAttributeKey(k); msg != "" {
		return fieldErr("data.attributes", "key "+quote(k)+" "+msg)
	}
	if msg := checkFreeText(v, MaxAttributeValue); msg != "" {
		return fieldErr(attributePath(k), msg)
	}
	return nil
}

func checkAttributeKey(k string) string {
	if k == "" {
		return "is empty"
	}
	if len(k) > MaxAttributeKey {
		return fmt.Sprintf("is %d bytes long (at most %d)", len(k), MaxAttributeKey)
	}
	if !utf8.ValidString(k) {
		return "is not valid UTF-8"
	}
	for i, r := range k {
		if badInAttributeKey(r) && !isFormat(r) {
			return fmt.Sprintf("has a control character %q at byte %d", r, i)
		}
	}
	return checkNoFormatChars(k)
}

// attributePath is the JSON path of an attribute: data.attributes.dept, or
// data.attributes["a b"] when the key is not a plain name.
func attributePath(k string) string {
	plain := k != ""
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if plain {
		return "data.attributes." + k
	}
	return "data.attributes[" + quote(k) + "]"
}

func validateEnvelope(e *Event) error {
	if msg := checkEnvelopeText(e.ID); msg != "" {
		return fieldErr("id", msg)
	}
	if msg := checkSource(e.Source); msg != "" {
		return fieldErr("source", msg)
	}
	if e.Type == "" {
		return fieldErr("type", "is missing")
	}
	if _, ok := specs[e.Type]; !ok {
		return fieldErr("type", "unknown event type "+quote(string(e.Type)))
	}
	if e.Time.IsZero() {
		return fieldErr("time", "is missing")
	}
	if msg := checkTime(e.Time); msg != "" {
		return fieldErr("time", msg)
	}
	return nil
}

// checkSource: like the id, and a URI reference (CloudEvents) in the form it is sent in, so that
// it survives the CloudEvents SDK unchanged (the source is half of the idempotency key).
func checkSource(s string) string {
	// Streams come from few sources: remember the good ones (url.Parse is most of Validate).
	if _, ok := goodSources.Load(s); ok {
		return ""
	}
	msg := checkSourceSlow(s)
	if msg == "" && goodSourceCount.Load() < maxGoodSources {
		if _, loaded := goodSources.LoadOrStore(s, struct{}{}); !loaded {
			goodSourceCount.Add(1)
		}
	}
	return msg
}

const maxGoodSources = 4096

var (
	goodSources     sync.Map // string → struct{}
	goodSourceCount atomic.Int64
)

func checkSourceSlow(s string) string {
	if msg := checkEnvelopeText(s); msg != "" {
		return msg
	}
	for i, r := range s {
		if unicode.IsSpace(r) {
			return fmt.Sprintf("has a space character %q at byte %d (a source is a URI reference)", r, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URI reference: " + strings.TrimPrefix(err.Error(), "parse "+strconv.Quote(s)+": ")
	}
	if c := u.String(); c != s {
		return "is not a URI reference in canonical form (it would travel as " + quote(c) + ")"
	}
	return ""
}

func checkTime(t time.Time) string {
	if t.Before(minTime) {
		return "is " + formatTime(t) + ", before 1970"
	}
	if !t.Before(maxTime) {
		return "is " + formatTime(t) + ", after 2200"
	}
	return ""
}

func isJSONObject(b json.RawMessage) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{' && json.Valid(b)
	}
	return false
}

// quote quotes s for an error message, cut to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}
