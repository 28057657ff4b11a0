package event

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite schema/whocould-events.schema.json from the rules of Validate")

// schemaDef is the $defs entry of each check.
var schemaDef = map[check]string{
	cPrincipal:  "principalId",
	cGroup:      "groupId",
	cRole:       "roleId",
	cMember:     "memberId",
	cPattern:    "actionPattern",
	cAction:     "action",
	cResource:   "resource",
	cEffect:     "effect",
	cToken:      "reference",
	cText:       "text",
	cTenant:     "tenant",
	cAttributes: "attributes",
	cExpiry:     "time",
	cChange:     "change",
}

// charClass is a regular-expression class of the characters of the Basic Multilingual Plane
// that bad does not reject, written with literal characters (portable across ECMA-262, RE2,
// Python and PCRE).
func charClass(t *testing.T, bad func(rune) bool, extra string) string {
	var b strings.Builder
	b.WriteString("[^")
	b.WriteString(extra)
	for r := rune(0); r <= 0xFFFF; r++ {
		if r >= 0xD800 && r <= 0xDFFF || !bad(r) {
			continue
		}
		lo := r
		for r+1 <= 0xFFFF && !(r+1 >= 0xD800 && r+1 <= 0xDFFF) && bad(r+1) {
			r++
		}
		for _, c := range []rune{lo, r} {
			if strings.ContainsRune(`\]^-[`, c) {
				t.Fatalf("class needs escaping for %q", c)
			}
		}
		b.WriteRune(lo)
		if r > lo {
			if r > lo+1 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
		}
	}
	b.WriteString("]")
	return b.String()
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/$defs/" + name} }

// generateSchema builds the JSON Schema from the tables Validate uses.
func generateSchema(t *testing.T) []byte {
	id := charClass(t, badInID, "")
	idNoStar := charClass(t, badInID, "*")
	idNoSlash := charClass(t, badInID, "/")
	envelope := charClass(t, badInEnvelope, "")
	text := charClass(t, badInText, "")
	attrKey := charClass(t, badInAttributeKey, "")
	const kind = "[a-z][a-z0-9_-]*"

	defs := map[string]any{
		"envelopeId": map[string]any{
			"description": "The CloudEvents id: with source, the idempotency key.",
			"type":        "string", "minLength": 1, "maxLength": MaxIDLen, "pattern": "^" + envelope + "+$",
		},
		"source": map[string]any{
			"description": "The CloudEvents source: a URI reference, in canonical form (as Go's net/url writes it).",
			"type":        "string", "minLength": 1, "maxLength": MaxIDLen, "pattern": "^" + id + "+$", "format": "uri-reference",
		},
		"id": map[string]any{
			"description": "An id, kind:name. Kinds group and team are groups, role is a role, every other kind a principal.",
			"type":        "string", "maxLength": MaxIDLen, "pattern": "^" + kind + ":" + id + "+$",
		},
		"principalId": map[string]any{
			"description": "An id of a principal: any kind but group, team and role.",
			"allOf":       []any{ref("id"), map[string]any{"not": map[string]any{"pattern": "^(group|team|role):"}}},
		},
		"groupId": map[string]any{
			"description": "An id of a group: kind group or team.",
			"allOf":       []any{ref("id"), map[string]any{"pattern": "^(group|team):"}},
		},
		"roleId": map[string]any{
			"description": "An id of a role: kind role.",
			"allOf":       []any{ref("id"), map[string]any{"pattern": "^role:"}},
		},
		"memberId": map[string]any{
			"description": "An id of a principal or a group (not a role).",
			"allOf":       []any{ref("id"), map[string]any{"not": map[string]any{"pattern": "^role:"}}},
		},
		"actionPattern": map[string]any{
			"description": "An action pattern: *, prefix.* or a plain action.",
			"type":        "string", "maxLength": MaxIDLen,
			"pattern": "^(\\*|" + idNoStar + "*\\.\\*|" + idNoStar + "+)$",
		},
		"action": map[string]any{
			"description": "One action, without *.",
			"type":        "string", "maxLength": MaxIDLen, "pattern": "^" + idNoStar + "+$",
		},
		"resource": map[string]any{
			"description": "A resource: *, kind:* or kind:path (no empty path segment).",
			"type":        "string", "maxLength": MaxIDLen,
			"pattern": "^(\\*|" + kind + ":(\\*|" + idNoSlash + "+(/" + idNoSlash + "+)*))$",
		},
		"effect": map[string]any{"enum": []any{Allow, Deny}},
		"reference": map[string]any{
			"description": "An opaque reference (a request or approval id): no spaces or control characters.",
			"type":        "string", "minLength": 1, "maxLength": MaxIDLen, "pattern": "^" + id + "+$",
		},
		"text": map[string]any{
			"description": "Free text: no control characters but tab and line breaks, no bidi controls.",
			"type":        "string", "maxLength": MaxTextLen, "pattern": "^" + text + "*$",
		},
		"tenant": map[string]any{
			"description": "A tenant: letters, digits, '.', '_' and '-', starting with a letter or digit.",
			"type":        "string", "maxLength": MaxTenantLen, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
		},
		"attributes": map[string]any{
			"description":   "Attributes of a principal; the value \"\" removes the attribute.",
			"type":          "object",
			"maxProperties": MaxAttributes,
			"propertyNames": map[string]any{"minLength": 1, "maxLength": MaxAttributeKey, "pattern": "^" + attrKey + "*$"},
			"additionalProperties": map[string]any{
				"type": "string", "maxLength": MaxAttributeValue, "pattern": "^" + text + "*$",
			},
		},
		"time": map[string]any{
			"description": "An RFC 3339 time from 1970 through 2200.",
			"type":        "string",
			"format":      "date-time",
			"pattern":     "^(19[7-9][0-9]|2[01][0-9]{2}|2200)-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
		},
		"change": map[string]any{"description": "The change an approval request asks for.", "type": "object"},
	}

	var branches []any
	var typeNames []any
	for _, ty := range Types {
		typeNames = append(typeNames, string(ty))
		props := map[string]any{}
		var req []any
		var oneOf []any
		for _, r := range rulesOf(ty) {
			props[r.name] = ref(schemaDef[r.check])
			switch r.pres {
			case required:
				req = append(req, r.name)
			case roleOrAction:
				oneOf = append(oneOf, map[string]any{"required": []any{r.name}})
			}
		}
		data := map[string]any{
			"type":                 "object",
			"properties":           props,
			"additionalProperties": false,
		}
		if len(req) > 0 {
			data["required"] = req
		}
		if len(oneOf) > 0 {
			data["oneOf"] = oneOf
		}
		defs["data."+string(ty)] = data
		then := map[string]any{"properties": map[string]any{"data": ref("data." + string(ty))}}
		if !ty.IsChange() {
			// actor and approval come with change events only, in data or as extensions.
			then["properties"].(map[string]any)["actor"] = false
			then["properties"].(map[string]any)["approval"] = false
		}
		branches = append(branches, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": string(ty)}}, "required": []any{"type"}},
			"then": then,
		})
	}

	schema := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/whocould/whocould/event/schema/whocould-events.schema.json",
		"title":       "whocould event",
		"description": "A whocould event: a structured CloudEvent 1.0 (JSON) whose data carries the fields of its type (DESIGN.md §2). tenant, actor and approval may also come as CloudEvents extension attributes; other extension attributes are allowed and ignored. Generated from event/validate.go; Go's event.Validate is the reference.",
		"type":        "object",
		"required":    []any{"specversion", "id", "source", "type", "time", "data"},
		"propertyNames": map[string]any{
			"description": "CloudEvents attribute names: lower-case letters and digits (so no data_base64: data is JSON).",
			"pattern":     "^[a-z0-9]+$",
		},
		"properties": map[string]any{
			"specversion":     map[string]any{"const": SpecVersion},
			"id":              ref("envelopeId"),
			"source":          ref("source"),
			"type":            map[string]any{"enum": typeNames},
			"time":            ref("time"),
			"datacontenttype": map[string]any{"type": "string", "pattern": "^\\s*(" + anyCase("application/json") + "|" + anyCase("text/json") + "|" + anyCase("application/") + "[^;]*\\+" + anyCase("json") + ")\\s*(;.*)?$"},
			"dataschema":      map[string]any{"type": "string"},
			"subject":         map[string]any{"type": "string"},
			"tenant":          ref("tenant"),
			"actor":           ref("principalId"),
			"approval":        ref("reference"),
			"data":            map[string]any{"type": "object"},
		},
		"additionalProperties": map[string]any{
			"description": "Other CloudEvents extension attributes.",
			"type":        []any{"string", "number", "boolean"},
		},
		"allOf": branches,
		"$defs": defs,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schema); err != nil {
		t.Fatal(err)
	}
	// Write DEL and every non-ASCII character as an escape: no invisible characters in the file.
	var out bytes.Buffer
	for _, r := range buf.String() {
		if r < utf8.RuneSelf-1 {
			out.WriteRune(r)
		} else {
			fmt.Fprintf(&out, "\\u%04x", r)
		}
	}
	return out.Bytes()
}

func TestSchemaUpToDate(t *testing.T) {
	want := generateSchema(t)
	if *update {
		if err := os.WriteFile("schema/whocould-events.schema.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(Schema, want) {
		t.Fatal("schema/whocould-events.schema.json is out of date with the rules of Validate: run go test ./event -run TestSchemaUpToDate -update")
	}
}

// TestSchemaMatchesGoTypes reads the embedded schema itself (not the generator) and checks it
// against the Go types and the table Validate enforces.
func TestSchemaMatchesGoTypes(t *testing.T) {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		AllOf      []struct {
			If struct {
				Properties struct {
					Type struct {
						Const string `json:"const"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"if"`
			Then struct {
				Properties struct {
					Data struct {
						Ref string `json:"$ref"`
					} `json:"data"`
				} `json:"properties"`
			} `json:"then"`
		} `json:"allOf"`
		Defs map[string]json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(Schema, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	var typeEnum struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(s.Properties["type"], &typeEnum); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ty := range Types {
		want = append(want, string(ty))
	}
	if !slices.Equal(typeEnum.Enum, want) {
		t.Errorf("schema type enum %v, want %v", typeEnum.Enum, want)
	}

	inSchema := map[string]bool{}
	for _, ty := range Types {
		var refName string
		n := 0
		for _, b := range s.AllOf {
			if b.If.Properties.Type.Const == string(ty) {
				refName = strings.TrimPrefix(b.Then.Properties.Data.Ref, "#/$defs/")
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d branches in the schema, want 1", ty, n)
			continue
		}
		var def struct {
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
			OneOf      []struct {
				Required []string `json:"required"`
			} `json:"oneOf"`
			AdditionalProperties *bool `json:"additionalProperties"`
		}
		if err := json.Unmarshal(s.Defs[refName], &def); err != nil {
			t.Fatalf("%s: $defs/%s: %v", ty, refName, err)
		}
		if def.AdditionalProperties == nil || *def.AdditionalProperties {
			t.Errorf("%s: data allows fields the type does not have", ty)
		}
		var wantReq, wantAll, wantOneOf []string
		for _, r := range rulesOf(ty) {
			wantAll = append(wantAll, r.name)
			switch r.pres {
			case required:
				wantReq = append(wantReq, r.name)
			case roleOrAction:
				wantOneOf = append(wantOneOf, r.name)
			}
		}
		var gotAll, gotOneOf []string
		for k := range def.Properties {
			gotAll = append(gotAll, k)
			inSchema[k] = true
		}
		for _, o := range def.OneOf {
			gotOneOf = append(gotOneOf, o.Required...)
		}
		for _, l := range [][]string{wantReq, wantAll, wantOneOf, def.Required, gotAll, gotOneOf} {
			sort.Strings(l)
		}
		if !slices.Equal(def.Required, wantReq) {
			t.Errorf("%s: schema requires %v, Validate %v", ty, def.Required, wantReq)
		}
		if !slices.Equal(gotAll, wantAll) {
			t.Errorf("%s: schema has data fields %v, Validate %v", ty, gotAll, wantAll)
		}
		if !slices.Equal(gotOneOf, wantOneOf) {
			t.Errorf("%s: schema one-of %v, Validate %v", ty, gotOneOf, wantOneOf)
		}
	}

	// Every json field of Data is in the schema, and dataFieldNames is Data's fields.
	var fields []string
	dt := reflect.TypeOf(Data{})
	for i := 0; i < dt.NumField(); i++ {
		name, _, _ := strings.Cut(dt.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
		if !inSchema[name] {
			t.Errorf("data field %q is in no type of the schema", name)
		}
	}
	if !slices.Equal(fields, dataFieldNames[:]) {
		t.Errorf("dataFieldNames %v, Data has %v", dataFieldNames, fields)
	}
}

// TestSetMask checks setMask against Data's fields by reflection: setting field i sets bit i.
func TestSetMask(t *testing.T) {
	dt := reflect.TypeOf(Data{})
	for i := 0; i < dt.NumField(); i++ {
		var d Data
		f := reflect.ValueOf(&d).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
			if got := stringField(&d, i); got != "x" {
				t.Errorf("stringField(%s) = %q", dt.Field(i).Name, got)
			}
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"a": "b"}))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Slice:
			f.SetBytes([]byte("{}"))
		}
		if got := setMask(&d); got != 1<<i {
			t.Errorf("setting %s gives mask %b, want bit %d", dt.Field(i).Name, got, i)
		}
	}
}

// anyCase is a pattern matching s in any letter case (media types are case-insensitive, and
// JSON Schema patterns have no flag for it).
func anyCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if lo, up := unicode.ToLower(r), unicode.ToUpper(r); lo != up {
			b.WriteString("[" + string(up) + string(lo) + "]")
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
