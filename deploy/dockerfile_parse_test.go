package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
)

// A reader for the Dockerfile and .dockerignore features our files use,
// enough to run the build stage here (dockerfile_test.go).

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
	line int
}

// stage is one FROM and what follows it.
type stage struct {
	name   string // the AS name, or ""
	base   string // the image, build args expanded
	instrs []instruction
}

// dockerfile is a parsed Dockerfile: the ARGs before the first FROM and
// the stages.
type dockerfile struct {
	globalArgs map[string]string
	stages     []stage
}

// parseDockerfile reads the instructions of a Dockerfile. It knows what
// our Dockerfile uses: comments, backslash continuations, ARG defaults
// and ${VAR} expansion in FROM.
func parseDockerfile(file string) (*dockerfile, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var instrs []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		// Comment lines end nothing, even inside a continuation.
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		cont := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`))
		if cont {
			cur.WriteByte(' ')
			continue
		}
		cmd, args, _ := strings.Cut(cur.String(), " ")
		instrs = append(instrs, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s: ends inside a continuation", file)
	}
	df := &dockerfile{globalArgs: map[string]string{}}
	for _, in := range instrs {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := stage{base: expandVars(f[0], df.globalArgs)}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("%s:%d: FROM %s: want IMAGE [AS NAME]", file, in.line, in.args)
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0:
			if in.cmd != "ARG" {
				return nil, fmt.Errorf("%s:%d: %s before the first FROM", file, in.line, in.cmd)
			}
			name, def, _ := strings.Cut(in.args, "=")
			df.globalArgs[name] = def
		default:
			st := &df.stages[len(df.stages)-1]
			st.instrs = append(st.instrs, in)
		}
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", file)
	}
	return df, nil
}

// final returns the last stage: the image.
func (d *dockerfile) final() *stage { return &d.stages[len(d.stages)-1] }

// stageNamed returns the stage called name, or nil.
func (d *dockerfile) stageNamed(name string) *stage {
	for i := range d.stages {
		if d.stages[i].name == name {
			return &d.stages[i]
		}
	}
	return nil
}

// all returns the arguments of every instruction cmd of the stage.
func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON-array argument (ENTRYPOINT, CMD).
func execForm(in instruction) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		return nil, fmt.Errorf("line %d: %s %s: want the exec (JSON array) form: %w", in.line, in.cmd, in.args, err)
	}
	return v, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expandVars replaces $VAR and ${VAR} with their values ("" when unset),
// as Docker and the shell do for what our Dockerfile uses.
func expandVars(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
}

// shellWords splits a shell command line into words: double and single
// quotes, $VAR and ${VAR} expansion (not in single quotes). Anything more
// (pipes, &&, backquotes, $( )) is an error: our RUN lines do not need it.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			w.WriteString(expandVars(s[i+1:i+1+j], vars))
			i += j + 1
			inWord = true
		case strings.IndexByte("|&;<>`\\()", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q in %q: the test only runs simple commands", c, s)
		case c == '$':
			m := varRef.FindString(s[i:])
			if m == "" {
				return nil, fmt.Errorf("lone $ in %q", s)
			}
			w.WriteString(expandVars(m, vars))
			i += len(m) - 1
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// dockerignore is the list of patterns of a .dockerignore file.
type dockerignore struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
	text   string
}

// readDockerignore parses .dockerignore as Docker does for the patterns
// we use: one pattern a line, # comments, ! to re-include, * and ? within
// a path element, ** across elements, paths relative to the context root.
func readDockerignore(file string) (*dockerignore, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	di := &dockerignore{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{text: line}
		if strings.HasPrefix(line, "!") {
			p.negate = true
			line = strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		if strings.ContainsAny(line, `[]{}\`) {
			return nil, fmt.Errorf("%s:%d: %q: character classes and escapes are not understood by this test", file, i+1, p.text)
		}
		var re strings.Builder
		re.WriteString("^")
		for j := 0; j < len(line); j++ {
			switch {
			case strings.HasPrefix(line[j:], "**/"):
				re.WriteString("(.*/)?")
				j += 2
			case strings.HasPrefix(line[j:], "**"):
				re.WriteString(".*")
				j++
			case line[j] == '*':
				re.WriteString("[^/]*")
			case line[j] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[j : j+1]))
			}
		}
		re.WriteString("$")
		p.re = regexp.MustCompile(re.String())
		di.patterns = append(di.patterns, p)
	}
	return di, nil
}

// excluded reports whether rel (slash-separated, relative to the context
// root) stays out of the build context: the last pattern that matches it
// or one of its parent directories decides.
func (d *dockerignore) excluded(rel string) bool {
	parts := strings.Split(rel, "/")
	out := false
	for _, p := range d.patterns {
		for i := len(parts); i >= 1; i-- {
			if p.re.MatchString(strings.Join(parts[:i], "/")) {
				out = !p.negate
				break
			}
		}
	}
	return out
}
