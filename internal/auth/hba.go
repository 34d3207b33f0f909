package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// This file is auth_type = hba: the subset of pg_hba.conf that PgBouncer
// reads (its src/hba.c), with PostgreSQL's meaning (PostgreSQL docs, "The
// pg_hba.conf File"):
//
//	local      DATABASE USER         METHOD
//	host       DATABASE USER ADDRESS METHOD
//	hostssl    DATABASE USER ADDRESS METHOD
//	hostnossl  DATABASE USER ADDRESS METHOD
//
// DATABASE and USER are comma-separated lists of names, "all", "@file"
// (names read from a file, relative to the hba file) and, for DATABASE,
// "sameuser"; a quoted name is a name, never a keyword. ADDRESS is "all",
// a CIDR ("10.0.0.0/8", "::1/128") or an address followed by a mask field
// ("10.0.0.0 255.0.0.0"). METHOD is trust, reject, md5, password,
// scram-sha-256 or cert (hostssl only). The first line that matches the
// connection type, address, database and user decides; a connection no line
// matches is refused.
//
// Unlike PgBouncer, which skips a line it cannot read with a warning, a
// line that cannot be read is an error: a skipped "reject" line would let
// in what it was written to keep out. What this subset lacks (host names,
// samehost/samenet, +group, samerole, replication, peer, ident, ldap, gss,
// pam, radius and options after the method) is named in the error.

// Methods that exist only in an hba file.
const (
	// MethodReject refuses the connection (28000, PostgreSQL's message).
	MethodReject Method = "reject"
	// MethodCert accepts a client whose TLS certificate, verified against
	// client_tls_ca_file, has the user name as its Common Name.
	MethodCert Method = "cert"
)

// ConnType is the first field of an hba line: how the client connected.
type ConnType int

// The connection types.
const (
	ConnLocal     ConnType = iota + 1 // local: a Unix socket
	ConnHost                          // host: TCP, with or without TLS
	ConnHostSSL                       // hostssl: TCP with TLS
	ConnHostNoSSL                     // hostnossl: TCP without TLS
)

var connTypes = map[string]ConnType{"local": ConnLocal, "host": ConnHost, "hostssl": ConnHostSSL, "hostnossl": ConnHostNoSSL}

var hbaMethods = map[string]Method{
	"trust": MethodTrust, "reject": MethodReject, "md5": MethodMD5,
	"password": MethodPlain, "scram-sha-256": MethodSCRAM, "cert": MethodCert,
}

// HBA is a parsed auth_hba_file. It is immutable once loaded.
type HBA struct {
	File  string
	Rules []HBARule
}

// HBARule is one line of an hba file.
type HBARule struct {
	Line      int
	Type      ConnType
	Databases NameList
	Users     NameList
	// Addr is the client network of a host* line; AllAddrs stands for
	// "all". Both are zero for local lines.
	Addr     netip.Prefix
	AllAddrs bool
	Method   Method
}

// NameList is the DATABASE or USER field of an hba line.
type NameList struct {
	All      bool            // "all"
	SameUser bool            // "sameuser" (DATABASE only)
	Names    map[string]bool // names, quoted or not, and those of @files
}

func (n NameList) match(name, user string) bool {
	return n.All || (n.SameUser && name == user) || n.Names[name]
}

// HBAClient is what an hba file is matched against.
type HBAClient struct {
	Local    bool       // connected through a Unix socket
	TLS      bool       // TCP with TLS
	Addr     netip.Addr // the client's address (TCP)
	Database string     // as asked for in the startup packet
	User     string
}

// Match returns the first rule that applies to c, and false when none
// does.
func (h *HBA) Match(c HBAClient) (HBARule, bool) {
	addr := c.Addr.Unmap()
	for _, r := range h.Rules {
		switch r.Type {
		case ConnLocal:
			if !c.Local {
				continue
			}
		case ConnHost, ConnHostSSL, ConnHostNoSSL:
			if c.Local || (r.Type == ConnHostSSL && !c.TLS) || (r.Type == ConnHostNoSSL && c.TLS) {
				continue
			}
			if !r.AllAddrs && !r.Addr.Contains(addr) {
				continue
			}
		}
		if r.Databases.match(c.Database, c.User) && r.Users.match(c.User, "") {
			return r, true
		}
	}
	return HBARule{}, false
}

// HBAError lists every problem of an hba file, each naming the file and
// line ("/etc/pauseproxy/hba.conf: line 3: ...").
type HBAError struct{ Problems []string }

func (e *HBAError) Error() string { return strings.Join(e.Problems, "\n") }

// LoadHBA reads and parses the hba file at path (and the @files it names).
// Every problem is reported at once in an *HBAError; a file that cannot be
// read is an error of its own.
func LoadHBA(path string) (*HBA, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := hbaParser{file: path, readFile: os.ReadFile}
	h := p.parse(string(data))
	if len(p.problems) > 0 {
		return nil, &HBAError{Problems: p.problems}
	}
	return h, nil
}

// ParseHBA parses the text of an hba file named file; @file names are
// read with readFile (relative ones against file's directory), or refused
// when readFile is nil.
func ParseHBA(file, text string, readFile func(string) ([]byte, error)) (*HBA, error) {
	p := hbaParser{file: file, readFile: readFile}
	h := p.parse(text)
	if len(p.problems) > 0 {
		return nil, &HBAError{Problems: p.problems}
	}
	return h, nil
}

type hbaParser struct {
	file     string
	readFile func(string) ([]byte, error)
	problems []string
}

// token is one word of a field; quoted tokens are never keywords.
type token struct {
	text   string
	quoted bool
}

func (p *hbaParser) problem(line int, format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf("%s: line %d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

func (p *hbaParser) parse(text string) *HBA {
	h := &HBA{File: p.file}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSuffix(lines[i], "\r")
		// A backslash at the end of a line continues it (PostgreSQL 16;
		// harmless before).
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + strings.TrimSuffix(lines[i], "\r")
		}
		fields, err := splitFields(line)
		if err != nil {
			p.problem(n, "%v", err)
			continue
		}
		if len(fields) == 0 {
			continue
		}
		if r, ok := p.rule(n, fields); ok {
			h.Rules = append(h.Rules, r)
		}
	}
	return h
}

// splitFields cuts a line into whitespace-separated fields, each a
// comma-separated list of tokens, up to a '#' outside quotes (PostgreSQL's
// tokenize_auth_file). "" inside quotes is one double quote.
func splitFields(line string) ([][]token, error) {
	var fields [][]token
	var cur []token
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) || line[i] == '#' {
			break
		}
		if line[i] == ',' {
			return nil, errors.New("a list item is missing before a comma")
		}
		var t token
		if line[i] == '"' {
			var b strings.Builder
			j := i + 1
			for ; ; j++ {
				if j >= len(line) {
					return nil, errors.New("unterminated quoted string")
				}
				if line[j] == '"' {
					if j+1 < len(line) && line[j+1] == '"' {
						b.WriteByte('"')
						j++
						continue
					}
					break
				}
				b.WriteByte(line[j])
			}
			t = token{text: b.String(), quoted: true}
			i = j + 1
		} else {
			j := i
			for j < len(line) && !strings.ContainsRune(" \t,#\"", rune(line[j])) {
				j++
			}
			t = token{text: line[i:j]}
			i = j
		}
		cur = append(cur, t)
		k := i
		for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
			k++
		}
		if k < len(line) && line[k] == ',' {
			// The list goes on after the comma.
			i = k + 1
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			if i == len(line) || line[i] == '#' {
				return nil, errors.New("a list ends with a comma")
			}
			continue
		}
		fields = append(fields, cur)
		cur = nil
	}
	return fields, nil
}

// rule reads one line's fields.
func (p *hbaParser) rule(n int, fields [][]token) (HBARule, bool) {
	r := HBARule{Line: n}
	typ := single(fields[0])
	var ok bool
	if r.Type, ok = connTypes[typ]; !ok {
		switch typ {
		case "hostgssenc", "hostnogssenc":
			p.problem(n, "connection type %q is not supported (GSSAPI encryption)", typ)
		default:
			p.problem(n, "unknown connection type %q (want local, host, hostssl or hostnossl)", typ)
		}
		return r, false
	}
	want := 5
	if r.Type == ConnLocal {
		want = 4
	}
	if len(fields) < want {
		p.problem(n, "too few fields for a %s line: want %s DATABASE USER%s METHOD", typ, typ, map[bool]string{true: "", false: " ADDRESS"}[r.Type == ConnLocal])
		return r, false
	}
	good := true
	r.Databases, ok = p.names(n, fields[1], true)
	good = good && ok
	r.Users, ok = p.names(n, fields[2], false)
	good = good && ok
	rest := fields[3:]
	if r.Type != ConnLocal {
		var used int
		used, ok = p.address(n, &r, rest)
		good = good && ok
		rest = rest[used:]
	}
	if len(rest) == 0 {
		p.problem(n, "no authentication method")
		return r, false
	}
	m := single(rest[0])
	if r.Method, ok = hbaMethods[m]; !ok {
		switch m {
		case "peer", "ident", "gss", "sspi", "ldap", "radius", "pam", "bsd":
			p.problem(n, "authentication method %q is not supported (want trust, reject, md5, password, scram-sha-256 or cert)", m)
		default:
			p.problem(n, "unknown authentication method %q (want trust, reject, md5, password, scram-sha-256 or cert)", m)
		}
		return r, false
	}
	if r.Method == MethodCert && r.Type != ConnHostSSL {
		// PostgreSQL refuses the same line.
		p.problem(n, "cert authentication is only supported on hostssl connections")
		good = false
	}
	if len(rest) > 1 {
		p.problem(n, "options after the authentication method are not supported (%s)", single(rest[1]))
		good = false
	}
	return r, good
}

// single is a field that must be one word; a list comes back joined, which
// no keyword matches.
func single(f []token) string {
	if len(f) == 1 {
		return f[0].text
	}
	var s []string
	for _, t := range f {
		s = append(s, t.text)
	}
	return strings.Join(s, ",")
}

// names reads a DATABASE (isDB) or USER field.
func (p *hbaParser) names(n int, f []token, isDB bool) (NameList, bool) {
	l := NameList{Names: map[string]bool{}}
	ok := true
	for _, t := range f {
		if t.quoted {
			l.Names[t.text] = true
			continue
		}
		switch {
		case t.text == "all":
			l.All = true
		case isDB && t.text == "sameuser":
			l.SameUser = true
		case isDB && t.text == "replication":
			// Matches replication connections only, which the proxy
			// does not take: the item matches nothing, so that a
			// pg_hba.conf copied from a server still loads.
		case isDB && (t.text == "samerole" || t.text == "samegroup"):
			p.problem(n, "%q is not supported (the proxy does not know role membership)", t.text)
			ok = false
		case !isDB && strings.HasPrefix(t.text, "+"):
			p.problem(n, "group names (%q) are not supported (the proxy does not know role membership)", t.text)
			ok = false
		case strings.HasPrefix(t.text, "@"):
			names, err := p.include(t.text[1:])
			if err != nil {
				p.problem(n, "%v", err)
				ok = false
			}
			for _, name := range names {
				l.Names[name] = true
			}
		default:
			l.Names[t.text] = true
		}
	}
	return l, ok
}

// include reads the names of an @file: words separated by spaces, commas
// or lines, '#' starting a comment.
func (p *hbaParser) include(name string) ([]string, error) {
	if p.readFile == nil {
		return nil, fmt.Errorf("@%s: files of names are not supported here", name)
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.file), name)
	}
	data, err := p.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("@%s: %w", name, err)
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		fields, err := splitFields(strings.TrimSuffix(line, "\r"))
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, i+1, err)
		}
		for _, f := range fields {
			for _, t := range f {
				out = append(out, t.text)
			}
		}
	}
	return out, nil
}

// address reads the ADDRESS field (and the mask field after an address
// without a prefix length) and returns how many fields it used.
func (p *hbaParser) address(n int, r *HBARule, fields [][]token) (int, bool) {
	if len(fields) == 0 {
		p.problem(n, "no address")
		return 0, false
	}
	a := single(fields[0])
	switch {
	case a == "all":
		r.AllAddrs = true
		return 1, true
	case a == "samehost" || a == "samenet":
		p.problem(n, "address %q is not supported: write the addresses", a)
		return 1, false
	case strings.Contains(a, "/"):
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			p.problem(n, "invalid CIDR address %q", a)
			return 1, false
		}
		r.Addr = pfx.Masked()
		return 1, true
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		p.problem(n, "invalid address %q: want all, a CIDR address or an IP address and a mask (host names are not supported)", a)
		return 1, false
	}
	if len(fields) < 3 {
		// An address, a mask and a method at least.
		p.problem(n, "address %q needs a mask: write %s/32 or %s 255.255.255.255", a, a, a)
		return 1, false
	}
	m := single(fields[1])
	mask, err := netip.ParseAddr(m)
	bits, ok := maskBits(mask)
	if err != nil || !ok || mask.Is4() != ip.Is4() {
		p.problem(n, "invalid IP mask %q", m)
		return 2, false
	}
	r.Addr = netip.PrefixFrom(ip, bits).Masked()
	return 2, true
}

// maskBits is the prefix length of a contiguous mask.
func maskBits(mask netip.Addr) (int, bool) {
	b := mask.AsSlice()
	bits := 0
	for i, x := range b {
		if x == 0xff {
			bits += 8
			continue
		}
		for x&0x80 != 0 {
			bits++
			x <<= 1
		}
		if x != 0 || slices.ContainsFunc(b[i+1:], func(y byte) bool { return y != 0 }) {
			return 0, false
		}
		break
	}
	return bits, mask.IsValid()
}
