package deploy

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Dockerfile cannot be built here (no Docker engine). These tests read
// it, run its go build line on what its COPY lines would copy from the
// build context that .dockerignore leaves, and check the image's paths
// against the other deployment files.

// assignment is a NAME=value word before a command.
var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// dockerBuild is what the Dockerfile's build stage produced, run here.
type dockerBuild struct {
	df      *dockerfile
	binary  string // the built binary, here
	inImage string // the binary's path in the image
	out     string // the build stage's -o path in the build container
	pkg     string // the package go build builds
}

// buildLikeDockerfile runs the build stage of repoRoot/Dockerfile in
// workDir: the context (repoRoot minus .dockerignore) is copied as its
// COPY lines say into workDir/build (the build container's root), go mod
// download is left to the module cache, and its go build line runs as it
// is, with buildArgs overriding ARG defaults. The final stage's COPY
// --from lines then place the files in workDir/image.
func buildLikeDockerfile(repoRoot, workDir string, buildArgs map[string]string) (*dockerBuild, error) {
	df, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	ignore, err := readDockerignore(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		return nil, err
	}
	if len(df.stages) < 2 {
		return nil, errors.New("Dockerfile: want a build stage and a final stage")
	}
	res := &dockerBuild{df: df}
	built := map[string]string{} // stage name -> its root directory here
	for si := range df.stages[:len(df.stages)-1] {
		st := &df.stages[si]
		root := filepath.Join(workDir, "stage"+fmt.Sprint(si))
		built[st.name] = root
		vars := map[string]string{}
		env := os.Environ()
		wd := "/"
		for _, in := range st.instrs {
			switch in.cmd {
			case "WORKDIR":
				wd = path.Join(wd, expandVars(in.args, vars))
			case "ARG":
				name, def, hasDef := strings.Cut(in.args, "=")
				if !hasDef {
					def = df.globalArgs[name]
				}
				if v, ok := buildArgs[name]; ok {
					def = v
				}
				vars[name] = def
			case "ENV":
				k, v, ok := strings.Cut(in.args, "=")
				if !ok {
					return nil, fmt.Errorf("Dockerfile:%d: ENV %s: want KEY=value", in.line, in.args)
				}
				vars[k] = expandVars(v, vars)
				env = append(env, k+"="+vars[k])
			case "COPY":
				if err := copyFromContext(repoRoot, ignore, root, wd, in, vars); err != nil {
					return nil, err
				}
			case "RUN":
				words, err := shellWords(in.args, vars)
				if err != nil {
					return nil, fmt.Errorf("Dockerfile:%d: %w", in.line, err)
				}
				if err := res.run(root, wd, env, words, in); err != nil {
					return nil, err
				}
			default:
				return nil, fmt.Errorf("Dockerfile:%d: %s in a build stage: teach deploy/dockerfile_test.go", in.line, in.cmd)
			}
		}
	}
	if res.out == "" {
		return nil, errors.New("Dockerfile: no RUN ... go build in the build stages")
	}
	image := filepath.Join(workDir, "image")
	for _, in := range df.final().all("COPY") {
		f := strings.Fields(in.args)
		if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") {
			return nil, fmt.Errorf("Dockerfile:%d: COPY %s: the final stage should only copy from a build stage", in.line, in.args)
		}
		src, ok := built[strings.TrimPrefix(f[0], "--from=")]
		if !ok {
			return nil, fmt.Errorf("Dockerfile:%d: %s: no such build stage", in.line, f[0])
		}
		if err := copyFile(filepath.Join(src, f[1]), filepath.Join(image, f[2])); err != nil {
			return nil, fmt.Errorf("Dockerfile:%d: %w", in.line, err)
		}
		if f[1] == res.out {
			res.binary, res.inImage = filepath.Join(image, f[2]), f[2]
		}
	}
	if res.binary == "" {
		return nil, fmt.Errorf("Dockerfile: the final stage does not copy the built binary %s", res.out)
	}
	return res, nil
}

// run runs one RUN of a build stage: go mod download is left out (the
// module cache has the modules), go build runs with its output moved under
// root. Anything else is an error until this test learns it.
func (b *dockerBuild) run(root, wd string, env, words []string, in instruction) error {
	// Leading NAME=value words set the command's environment.
	for len(words) > 0 && assignment.MatchString(words[0]) {
		env = append(env, words[0])
		words = words[1:]
	}
	switch {
	case slices.Equal(words, []string{"go", "mod", "download"}):
		return nil
	case len(words) > 2 && words[0] == "go" && words[1] == "build":
	default:
		return fmt.Errorf("Dockerfile:%d: RUN %s: teach deploy/dockerfile_test.go what it does", in.line, in.args)
	}
	args := slices.Clone(words[1:])
	for i := 0; i < len(args)-1; i++ {
		if args[i] == "-o" {
			b.out = args[i+1]
			args[i+1] = filepath.Join(root, args[i+1])
		}
	}
	if b.out == "" {
		return fmt.Errorf("Dockerfile:%d: go build without -o", in.line)
	}
	b.pkg = args[len(args)-1]
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join(root, wd)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("Dockerfile:%d: go %s: %w\n%s", in.line, strings.Join(args, " "), err, out)
	}
	return nil
}

// copyFromContext runs a COPY from the build context: each source (a file,
// a directory whose contents are copied, or ".") goes to dest, relative to
// the working directory wd, under root. What .dockerignore excludes is not
// in the context and is not copied.
func copyFromContext(repoRoot string, ignore *dockerignore, root, wd string, in instruction, vars map[string]string) error {
	f := strings.Fields(expandVars(in.args, vars))
	if len(f) < 2 || strings.HasPrefix(f[0], "--") {
		return fmt.Errorf("Dockerfile:%d: COPY %s: want SRC... DEST from the context", in.line, in.args)
	}
	srcs, dest := f[:len(f)-1], f[len(f)-1]
	if !path.IsAbs(dest) {
		dest = path.Join(wd, dest)
	}
	for _, src := range srcs {
		rel := path.Clean(src)
		if rel != "." && ignore.excluded(rel) {
			return fmt.Errorf("Dockerfile:%d: COPY %s: .dockerignore excludes it from the context", in.line, src)
		}
		full := filepath.Join(repoRoot, rel)
		st, err := os.Stat(full)
		if err != nil {
			return fmt.Errorf("Dockerfile:%d: COPY %s: not in the repository: %w", in.line, src, err)
		}
		if !st.IsDir() {
			to := filepath.Join(root, dest)
			if strings.HasSuffix(f[len(f)-1], "/") || len(srcs) > 1 {
				to = filepath.Join(to, path.Base(rel))
			}
			if err := copyFile(full, to); err != nil {
				return err
			}
			continue
		}
		err = filepath.WalkDir(full, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			r, _ := filepath.Rel(repoRoot, p)
			r = filepath.ToSlash(r)
			if r != "." && ignore.excluded(r) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			below, _ := filepath.Rel(full, p)
			return copyFile(p, filepath.Join(root, dest, below))
		})
		if err != nil {
			return fmt.Errorf("Dockerfile:%d: COPY %s: %w", in.line, src, err)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// imageConfigPath is the config file the image's default command reads.
func imageConfigPath(t *testing.T) string {
	t.Helper()
	cmd := imageCmd(t)
	for i := 0; i < len(cmd)-1; i++ {
		if cmd[i] == "--config" {
			return cmd[i+1]
		}
	}
	t.Fatalf("Dockerfile: CMD %q has no --config FILE", cmd)
	return ""
}

func imageCmd(t *testing.T) []string {
	t.Helper()
	cmds := image.df.final().all("CMD")
	if len(cmds) != 1 {
		t.Fatalf("Dockerfile: want one CMD in the final stage, got %d", len(cmds))
	}
	cmd, err := execForm(cmds[0])
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// imageUser is the numeric uid the image runs as.
func imageUser(t *testing.T) string {
	t.Helper()
	users := image.df.final().all("USER")
	if len(users) != 1 {
		t.Fatalf("Dockerfile: want one USER in the final stage, got %d", len(users))
	}
	uid, _, _ := strings.Cut(users[0].args, ":")
	return uid
}

func TestDockerfileBuildsTheCommand(t *testing.T) {
	// The build ran in TestMain; here its result is checked.
	if image.pkg != "./cmd/pauseproxy" {
		t.Errorf("Dockerfile builds %q, want ./cmd/pauseproxy (the main package CI tests)", image.pkg)
	}
	out, err := exec.Command(image.binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", image.binary, err, out)
	}
	// The VERSION build arg reaches main.version through -ldflags -X.
	if want := "pauseproxy " + testVersion + "\n"; string(out) != want {
		t.Errorf("version = %q, want %q: -X main.version does not reach cmd/pauseproxy's version variable", out, want)
	}

	// CGO_ENABLED=0: no ELF interpreter and no shared libraries, or the
	// binary would not start on a distroless static (or scratch) image.
	f, err := elf.Open(image.binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is not static (CGO_ENABLED=0 missing?)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links shared libraries %v", libs)
	}
}

// pinnedImage is an image named by tag and digest.
var pinnedImage = regexp.MustCompile(`^[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}$`)

func TestDockerfileImage(t *testing.T) {
	df := image.df
	// The builder's Go must be the one go.mod asks for (GOTOOLCHAIN=local
	// in the golang images: an older one refuses to build).
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	builder := df.stageNamed("build")
	if builder == nil {
		t.Fatal("Dockerfile: no stage named build")
	}
	builderTag, _, _ := strings.Cut(builder.base, "@")
	if want := "golang:" + string(m[1]); builderTag != want && !strings.HasPrefix(builderTag, want+".") && !strings.HasPrefix(builderTag, want+"-") {
		t.Errorf("build stage FROM %s, want %s (go.mod's go %s)", builder.base, want, m[1])
	}

	final := df.final()
	if !strings.Contains(final.base, "distroless/static") && final.base != "scratch" {
		t.Errorf("final stage FROM %s: want a distroless static image or scratch", final.base)
	}
	// Both bases pinned by digest, tag kept for readers.
	for _, base := range []string{builder.base, final.base} {
		if !pinnedImage.MatchString(base) {
			t.Errorf("FROM %s: want NAME:TAG@sha256:<64 hex digits> (pinned by digest)", base)
		}
	}

	// HEALTHCHECK runs the binary's own probe: a command it knows, with
	// flags it accepts, on the configuration the image reads.
	hcs := final.all("HEALTHCHECK")
	if len(hcs) != 1 {
		t.Fatalf("want one HEALTHCHECK, got %d", len(hcs))
	}
	_, cmdPart, ok := strings.Cut(hcs[0].args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s: no CMD", hcs[0].args)
	}
	hc, err := execForm(instruction{cmd: "HEALTHCHECK", args: strings.TrimSpace(cmdPart), line: hcs[0].line})
	if err != nil {
		t.Fatal(err)
	}
	if len(hc) < 2 || hc[0] != image.inImage || hc[1] != "health" {
		t.Fatalf("HEALTHCHECK CMD %q, want [%q health ...]", hc, image.inImage)
	}
	if i := slices.Index(hc, "--config"); i < 0 || i+1 >= len(hc) || hc[i+1] != imageConfigPath(t) {
		t.Errorf("HEALTHCHECK CMD %q: want --config %s (the configuration CMD serves)", hc, imageConfigPath(t))
	}
	if out, err := exec.Command(image.binary, append(hc[1:], "--help")...).CombinedOutput(); err != nil {
		t.Errorf("the HEALTHCHECK's flags: %s %v --help: %v\n%s", image.binary, hc[1:], err, out)
	}
	if uid := imageUser(t); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks numbers)", uid)
	}
	eps := final.all("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("want one ENTRYPOINT, got %d", len(eps))
	}
	ep, err := execForm(eps[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(ep) != 1 || ep[0] != image.inImage {
		t.Errorf("ENTRYPOINT %q, want [%q] (where the binary is copied)", ep, image.inImage)
	}
	if p := imageConfigPath(t); p != "/etc/pauseproxy/pauseproxy.toml" {
		t.Errorf("CMD reads %s, want /etc/pauseproxy/pauseproxy.toml (where the manifests and the systemd unit put it)", p)
	}

	// EXPOSE the default listen_port and the manifests' http_listen ports.
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	cfg := checkConfig(t, "[proxy]\nauth_type = \"trust\"\n[databases.app]\nhost = \"127.0.0.1\"\n", nil, "", nil)
	ports := []string{fmt.Sprint(cfg.Proxy.ListenPort)}
	for _, m := range readManifests(t) {
		for _, p := range m.proxies {
			ports = append(ports, fmt.Sprint(httpPort(t, p.cfg)))
		}
	}
	for _, port := range ports {
		if !slices.Contains(exposed, port) && !slices.Contains(exposed, port+"/tcp") {
			t.Errorf("EXPOSE %v lacks %s", exposed, port)
		}
	}
}

func TestDockerignore(t *testing.T) {
	ignore, err := readDockerignore(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		out  bool
	}{
		{path: ".git/config", out: true},
		{path: "cmd/pauseproxy/main.go", out: false},
		{path: "cmd/pauseproxy/main_test.go", out: true},
		{path: "internal/config/testdata/pgbouncer.ini", out: true},
		{path: "internal/wire/frame.go", out: false},
		{path: "go.mod", out: false},
		{path: "go.sum", out: false},
		{path: "deploy/systemd/pauseproxy.env", out: true},
		{path: "bench/work/x", out: true},
		{path: "pauseproxy", out: true},
	} {
		if got := ignore.excluded(tc.path); got != tc.out {
			t.Errorf("excluded(%s) = %v, want %v", tc.path, got, tc.out)
		}
	}
}
