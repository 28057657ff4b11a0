package event

import (
	"slices"
	"time"

	"unicode/utf8"
)

// appendEvent appends e as marshalData (the encoding/json reference) writes it, without
// reflection. FuzzFastVsSlow holds the two to the same bytes.
func appendEvent(dst []byte, e *Event) []byte {
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendJSONString(dst, e.ID)
	dst = append(dst, `,"source":`...)
	dst = appendJSONString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, string(e.Type))
	dst = append(dst, `,"time":"`...)
	dst = appendTime(dst, e.Time)
	dst = append(dst, `","datacontenttype":"application/json","data":`...)
	dst = appendData(dst, &e.Data)
	return append(dst, '}')
}

// appendData appends d as encodeData writes it: the fields in struct order, expires_at last.
func appendData(dst []byte, d *Data) []byte {
	dst = append(dst, '{')
	first := true
	field := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
	}
	str := func(name, v string) {
		if v != "" {
			field(name)
			dst = appendJSONString(dst, v)
		}
	}
	str("principal", d.Principal)
	if len(d.Attributes) > 0 {
		field("attributes")
		keys := make([]string, 0, len(d.Attributes))
		for k := range d.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSONString(dst, d.Attributes[k])
		}
		dst = append(dst, '}')
	}
	str("group", d.Group)
	str("member", d.Member)
	str("role", d.Role)
	str("action", d.Action)
	str("includes", d.Includes)
	str("subject", d.Subject)
	str("resource", d.Resource)
	str("effect", d.Effect)
	str("reason", d.Reason)
	str("policy", d.Policy)
	str("request", d.Request)
	str("requester", d.Requester)
	str("approver", d.Approver)
	if len(d.Change) > 0 {
		field("change")
		dst = appendCompact(dst, d.Change)
	}
	str("actor", d.Actor)
	str("approval", d.Approval)
	str("tenant", d.Tenant)
	if d.ExpiresAt != nil {
		field("expires_at")
		dst = append(dst, '"')
		dst = appendTime(dst, *d.ExpiresAt)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendCompact is json.Compact of b, which the caller knows to be valid JSON (Validate
// checked it).
func appendCompact(dst, b []byte) []byte {
	inStr := false
	start := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, b[start:i]...)
			start = i + 1
		}
	}
	return append(dst, b[start:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding without HTML escaping.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendTime appends t in TimeLayout, as formatTime writes it.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimeLayout)
	}
	hour, min, sec := t.Clock()
	ns := t.Nanosecond()
	dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.')
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	dst = append(dst, frac[:]...)
	return append(dst, 'Z')
}
