package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxSeconds is the largest number of seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// assign stores v, a value as the TOML decoder returns it (string, int64,
// float64, bool, []any, map[string]any, time types) or a time.Duration
// from the ini reader, into the field dst points to. It returns "" or what
// is wrong, without the key (the caller adds it). Messages about a wrong
// type never quote the value: the key may be a secret.
func assign(dst, v any) string {
	switch p := dst.(type) {
	case *string:
		s, ok := v.(string)
		if !ok {
			return "want a string, got " + describe(v)
		}
		*p = s
	case *PoolMode:
		s, ok := v.(string)
		if !ok {
			return "want a string, got " + describe(v)
		}
		*p = PoolMode(s)
	case *AuthType:
		s, ok := v.(string)
		if !ok {
			return "want a string, got " + describe(v)
		}
		*p = AuthType(s)
	case *int:
		n, ok := v.(int64)
		if !ok {
			return "want an integer, got " + describe(v)
		}
		if n > math.MaxInt || n < math.MinInt {
			return fmt.Sprintf("%d is out of range", n)
		}
		*p = int(n)
	case *bool:
		b, ok := v.(bool)
		if !ok {
			return "want true or false, got " + describe(v)
		}
		*p = b
	case *time.Duration:
		d, problem := toDuration(v)
		if problem != "" {
			return problem
		}
		*p = d
	case *addrList:
		return assignAddrList(p, v)
	case *[]string:
		list, ok := v.([]any)
		if !ok {
			return `want an array of strings, like ["a", "b"], got ` + describe(v)
		}
		out := make([]string, 0, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Sprintf("element %d: want a string, got %s", i+1, describe(e))
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			out = nil // [] means the same as leaving the key out
		}
		*p = out
	default:
		panic(fmt.Sprintf("config: field of unsupported type %T", dst))
	}
	return ""
}

// addrList is the type of listen_addr: a list of addresses that TOML may
// also give as one string, comma-separated, as PgBouncer does.
type addrList []string

// assignAddrList stores a string ("127.0.0.1, ::1"; "" for none) or an
// array of strings into p, entries trimmed. Entries are checked by
// validation.
func assignAddrList(p *addrList, v any) string {
	var entries []string
	switch x := v.(type) {
	case string:
		if strings.TrimSpace(x) != "" {
			entries = strings.Split(x, ",")
		}
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Sprintf("element %d: want a string, got %s", i+1, describe(e))
			}
			if strings.Contains(s, ",") {
				return fmt.Sprintf("element %d: one address per element, got %q", i+1, s)
			}
			entries = append(entries, s)
		}
	default:
		return `want a string ("127.0.0.1, ::1") or an array of strings, got ` + describe(v)
	}
	out := make(addrList, 0, len(entries))
	for _, e := range entries {
		out = append(out, strings.TrimSpace(e))
	}
	if len(out) == 0 {
		out = nil
	}
	*p = out
	return ""
}

// toDuration reads a duration: a string for time.ParseDuration ("15s",
// "500ms"), or a number of seconds, integer or not (PgBouncer's habit:
// its time settings are seconds, "0.5" included).
func toDuration(v any) (time.Duration, string) {
	const want = `want a duration like "15s" or "500ms", or a number of seconds`
	switch x := v.(type) {
	case time.Duration:
		return x, ""
	case string:
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Sprintf("%s, got %q", want, x)
		}
		return d, ""
	case int64:
		if x > maxSeconds || x < -maxSeconds {
			return 0, fmt.Sprintf("%d seconds is out of range", x)
		}
		return time.Duration(x) * time.Second, ""
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > float64(maxSeconds) {
			return 0, fmt.Sprintf("%v seconds is out of range", x)
		}
		return time.Duration(math.Round(x * float64(time.Second))), ""
	}
	return 0, want + ", got " + describe(v)
}

// describe names the TOML type of v for messages.
func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Duration:
		return "a duration"
	}
	return "a date/time"
}

// iniValue converts an ini setting's text into the value assign expects for
// dst, with PgBouncer's conventions: durations are seconds (fractions
// allowed; a Go duration string is accepted too), booleans are 0/1 (or
// yes/no, on/off, true/false), lists are separated by commas or spaces.
// The problem never quotes a string setting's value, which may be a secret.
func iniValue(dst any, s string) (any, string) {
	switch dst.(type) {
	case *string, *PoolMode, *AuthType:
		return s, ""
	case *int:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Sprintf("want an integer, got %q", s)
		}
		return n, ""
	case *bool:
		switch strings.ToLower(s) {
		case "1", "yes", "on", "true":
			return true, ""
		case "0", "no", "off", "false":
			return false, ""
		}
		return nil, fmt.Sprintf("want 0 or 1, got %q", s)
	case *time.Duration:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return toDurationValue(f)
		}
		if d, err := time.ParseDuration(s); err == nil {
			return d, ""
		}
		return nil, fmt.Sprintf("want a number of seconds, got %q", s)
	case *[]string:
		return splitList(s), ""
	case *addrList:
		return s, "" // split by assign, as a TOML string is
	}
	panic(fmt.Sprintf("config: field of unsupported type %T", dst))
}

func toDurationValue(seconds float64) (any, string) {
	d, problem := toDuration(seconds)
	if problem != "" {
		return nil, problem
	}
	return d, ""
}

// splitList splits a PgBouncer list setting ("a, b c") into []any.
func splitList(s string) []any {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || isSpace(r) })
	out := make([]any, len(fields))
	for i, f := range fields {
		out[i] = f
	}
	return out
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
}
