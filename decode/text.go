package decode

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"unicode/utf8"
)

// PostgreSQL text and jsonb cannot hold NUL, and text must be valid UTF-8. Strings bound for a
// row are cleaned the same way everywhere:
//
//	strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
//
// Clean input (nearly all of it) is checked without allocating.

// cleanText returns s cleaned, and whether that changed it.
func cleanText(s string) (string, bool) {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s, false
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD"), true
}

var (
	jsonNUL     = []byte(`\u0000`)
	jsonInvalid = []byte(`\ufffd`)
)

// marshalClean returns v as JSON with every string in it (keys included) cleaned, and whether
// cleaning changed anything. encoding/json writes a NUL as the escape \u0000 and an invalid
// UTF-8 byte as the escape \ufffd (a real U+FFFD stays literal), so JSON without either
// escape came from clean strings: the common case costs one scan. Otherwise the strings of v
// are cleaned in place and v is marshalled again; cleaning the JSON text instead would not be
// exact, since dropping a NUL can join bytes into a valid sequence that the escapes have lost.
func marshalClean(v any) ([]byte, bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, err
	}
	if !bytes.Contains(b, jsonNUL) && !bytes.Contains(b, jsonInvalid) {
		return b, false, nil
	}
	// Possibly only a literal backslash-u text; the walk tells. A struct held by value comes
	// back as a cleaned copy: marshal what the walk returns.
	v, changed := cleanAny(v)
	if !changed {
		return b, false, nil
	}
	b, err = json.Marshal(v)
	return b, true, err
}

// cleanAny cleans the strings of a value in place where it can and returns the value (changed
// for a string or a struct held by value) and whether anything changed. It handles atdata's
// generic data (map[string]any, []any, atdata.Blob ...) and, by reflection, indigo's typed
// values.
func cleanAny(v any) (any, bool) {
	switch v := v.(type) {
	case nil:
		return v, false
	case string:
		return cleanText(v)
	case map[string]any:
		return v, cleanMap(v)
	case []any:
		changed := false
		for i, e := range v {
			var c bool
			v[i], c = cleanAny(e)
			changed = changed || c
		}
		return v, changed
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return v, cleanValue(rv)
	}
	// A struct or named string held by value (atdata.Blob, say): clean an addressable copy.
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	changed := cleanValue(p.Elem())
	return p.Elem().Interface(), changed
}

// cleanMap cleans a generic map's keys and values in place.
func cleanMap(m map[string]any) bool {
	changed := false
	var renamed map[string]any
	for k, e := range m {
		e, c := cleanAny(e)
		changed = changed || c
		ck, kc := cleanText(k)
		if kc {
			delete(m, k)
			if renamed == nil {
				renamed = make(map[string]any)
			}
			renamed[ck] = e
			changed = true
		} else if c {
			m[k] = e
		}
	}
	for k, e := range renamed {
		m[k] = e
	}
	return changed
}

// cleanValue cleans the settable strings reachable from a typed value.
func cleanValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return false
		}
		return cleanValue(v.Elem())
	case reflect.Interface:
		if v.IsNil() {
			return false
		}
		e := v.Elem()
		if e.Kind() == reflect.Pointer {
			return cleanValue(e)
		}
		n, changed := cleanAny(e.Interface())
		if changed && v.CanSet() {
			v.Set(reflect.ValueOf(n))
		}
		return changed
	case reflect.Struct:
		changed := false
		t := v.Type()
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				changed = cleanValue(v.Field(i)) || changed
			}
		}
		return changed
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return false // bytes: written as base64
		}
		changed := false
		for i := range v.Len() {
			changed = cleanValue(v.Index(i)) || changed
		}
		return changed
	case reflect.Map:
		if m, ok := v.Interface().(map[string]any); ok {
			return cleanMap(m)
		}
		return false
	case reflect.String:
		s, changed := cleanText(v.String())
		if changed && v.CanSet() {
			v.SetString(s)
		}
		return changed
	}
	return false
}

// Bounds of a Problem's fields.
const (
	maxSubject = 256
	maxDetail  = 200
)

// truncate cuts s to at most n bytes, backing up so that it does not split a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for k := 0; k < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); k++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n // not valid UTF-8 here anyway
	}
	return s[:cut]
}
