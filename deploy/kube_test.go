package deploy

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// proxyPod is a Deployment of a manifest that runs pauseproxy, with the
// config its ConfigMap gives it, validated.
type proxyPod struct {
	dep     *deployment
	c       *container // the pauseproxy container
	sidecar bool       // a native sidecar (init container, restartPolicy Always)
	cfg     *config.Config
}

type manifest struct {
	file    string // relative to the repository
	objs    *manifestObjects
	proxies []*proxyPod
}

// readManifests decodes deploy/kubernetes/*.yaml and validates the config
// of every pauseproxy container in them.
func readManifests(t *testing.T) []*manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/kubernetes/*.yaml: %v", err)
	}
	var out []*manifest
	for _, file := range files {
		rel, _ := filepath.Rel(repoRoot, file)
		objs, err := decodeManifests(file)
		if err != nil {
			t.Fatal(err)
		}
		m := &manifest{file: rel, objs: objs}
		for _, d := range objs.Deployments {
			spec := &d.Spec.Template.Spec
			for i := range spec.InitContainers {
				if c := &spec.InitContainers[i]; c.Name == "pauseproxy" {
					m.proxies = append(m.proxies, &proxyPod{dep: d, c: c, sidecar: c.RestartPolicy == "Always"})
				}
			}
			for i := range spec.Containers {
				if c := &spec.Containers[i]; c.Name == "pauseproxy" {
					m.proxies = append(m.proxies, &proxyPod{dep: d, c: c})
				}
			}
		}
		if len(m.proxies) == 0 {
			t.Fatalf("%s: no container named pauseproxy", rel)
		}
		for _, p := range m.proxies {
			p.cfg = m.loadConfig(t, p)
		}
		out = append(out, m)
	}
	return out
}

// loadConfig finds the config file the container reads (its --config
// argument, or the image's default), in the ConfigMap mounted there, and
// validates it with the container's environment and mounts.
func (m *manifest) loadConfig(t *testing.T, p *proxyPod) *config.Config {
	t.Helper()
	file := imageConfigPath(t)
	if len(p.c.Command) > 0 {
		t.Errorf("%s: pauseproxy container sets command: keep the image's entrypoint", m.file)
	}
	for i := 0; i < len(p.c.Args)-1; i++ {
		if p.c.Args[i] == "--config" {
			file = p.c.Args[i+1]
		}
	}
	dir, name := path.Split(file)
	var cm *configMap
	var mounts []string
	for _, vm := range p.c.VolumeMounts {
		mounts = append(mounts, vm.MountPath)
		v := podVolume(&p.dep.Spec.Template.Spec, vm.Name)
		if v == nil {
			t.Fatalf("%s: volumeMount %s: no such volume", m.file, vm.Name)
		}
		if path.Clean(vm.MountPath) == path.Clean(dir) {
			if v.ConfigMap == nil {
				t.Fatalf("%s: %s is mounted from volume %s, which is not a ConfigMap", m.file, dir, vm.Name)
			}
			if cm = m.objs.configMap(v.ConfigMap.Name); cm == nil {
				t.Fatalf("%s: ConfigMap %s (mounted at %s) is not in the file", m.file, v.ConfigMap.Name, dir)
			}
		}
	}
	if cm == nil {
		t.Fatalf("%s: nothing is mounted at %s, where pauseproxy reads %s", m.file, dir, file)
	}
	text, ok := cm.Data[name]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no key %s (the file pauseproxy reads)", m.file, cm.Metadata.Name, name)
	}
	env := m.containerEnv(t, p.c)
	return checkConfig(t, text, env, t.TempDir(), mounts)
}

// containerEnv is the container's environment as Kubernetes would set it,
// with a dummy value for each Secret reference, which must exist in the
// file's Secret.
func (m *manifest) containerEnv(t *testing.T, c *container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandKubeVars(e.Value, env)
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			if !m.objs.secretKey(r.Name, r.Key) {
				t.Errorf("%s: container %s: env %s: Secret %s has no key %s in this file", m.file, c.Name, e.Name, r.Name, r.Key)
			}
			env[e.Name] = "dummy-" + strings.ToLower(e.Name)
		case e.ValueFrom.ResourceFieldRef != nil:
			// limits.memory in bytes, as Kubernetes gives it.
			if e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
				t.Errorf("%s: env %s: resourceFieldRef %s: teach the test", m.file, e.Name, e.ValueFrom.ResourceFieldRef.Resource)
				continue
			}
			n, err := quantityBytes(c.Resources.Limits["memory"])
			if err != nil {
				t.Errorf("%s: container %s: env %s from limits.memory: %v", m.file, c.Name, e.Name, err)
				continue
			}
			env[e.Name] = strconv.FormatInt(n, 10)
		default:
			t.Errorf("%s: env %s: valueFrom kind not known to the test", m.file, e.Name)
		}
	}
	return env
}

var kubeVarRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandKubeVars expands $(VAR) from the variables defined before it, as
// the kubelet does (an unknown reference stays as it is).
func expandKubeVars(s string, env map[string]string) string {
	return kubeVarRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// quantityBytes parses a Kubernetes memory quantity: 256Mi, 1Gi, 500M.
func quantityBytes(q string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(q, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("quantity %q: want a positive integer with Ki, Mi, Gi, k, M or G", q)
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("quantity %q", q)
}

func podVolume(spec *podSpec, name string) *volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// resolvePort turns a port number or a container port name into a number.
func resolvePort(c *container, p intOrString) (int, bool) {
	if !p.IsStr {
		return p.Int, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.Str {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// httpPort is the port of the config's http_listen.
func httpPort(t *testing.T, cfg *config.Config) int {
	t.Helper()
	_, port, err := net.SplitHostPort(cfg.Proxy.HTTPListen)
	if err != nil {
		t.Fatalf("http_listen %q: %v (the probes need it)", cfg.Proxy.HTTPListen, err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	for _, m := range readManifests(t) {
		t.Run(path.Base(m.file), func(t *testing.T) {
			for _, p := range m.proxies {
				m.checkProbes(t, p)
				m.checkShutdownBudget(t, p)
				m.checkContainer(t, p)
				if p.sidecar {
					m.checkSidecar(t, p)
				} else {
					m.checkCentral(t, p)
				}
			}
			m.checkSelectors(t)
		})
	}
}

// checkProbes: the kubelet probes /readyz and /healthz on the port of
// http_listen, which must not be loopback (the kubelet connects to the Pod
// IP).
func (m *manifest) checkProbes(t *testing.T, p *proxyPod) {
	host, _, _ := net.SplitHostPort(p.cfg.Proxy.HTTPListen)
	if isLoopback(host) {
		t.Errorf("%s: http_listen %s is loopback: the kubelet probes the Pod IP", m.file, p.cfg.Proxy.HTTPListen)
	}
	want := httpPort(t, p.cfg)
	for _, pr := range []struct {
		name  string
		probe *probe
		paths []string
	}{
		{name: "readinessProbe", probe: p.c.ReadinessProbe, paths: []string{"/readyz"}},
		{name: "livenessProbe", probe: p.c.LivenessProbe, paths: []string{"/healthz"}},
		{name: "startupProbe", probe: p.c.StartupProbe, paths: []string{"/healthz", "/readyz"}},
	} {
		if pr.probe == nil {
			if pr.name != "startupProbe" {
				t.Errorf("%s: pauseproxy has no %s", m.file, pr.name)
			}
			continue
		}
		if pr.probe.HTTPGet == nil {
			t.Errorf("%s: %s: want httpGet", m.file, pr.name)
			continue
		}
		got := pr.probe.HTTPGet
		if !strings.Contains(strings.Join(pr.paths, " "), got.Path) || got.Path == "" {
			t.Errorf("%s: %s path %q, want one of %v", m.file, pr.name, got.Path, pr.paths)
		}
		if port, ok := resolvePort(p.c, got.Port); !ok || port != want {
			t.Errorf("%s: %s port %s = %d, want http_listen's port %d", m.file, pr.name, got.Port, port, want)
		}
	}
	if r := p.c.ReadinessProbe; r != nil {
		// Not ready for longer than a hold would take the Pod out of its
		// Services during an ordinary switchover.
		period, failures := r.PeriodSeconds, r.FailureThreshold
		if period == 0 {
			period = 10 // Kubernetes' defaults
		}
		if failures == 0 {
			failures = 3
		}
		if tolerance := time.Duration(period*failures) * time.Second; tolerance < p.cfg.Proxy.HoldTimeout {
			t.Errorf("%s: readinessProbe fails the Pod after %v, less than hold_timeout %v", m.file, tolerance, p.cfg.Proxy.HoldTimeout)
		}
	}
}

// checkShutdownBudget: the grace period covers every preStop sleep (they
// may run one after the other: application first, then a native sidecar)
// and the proxy's shutdown_timeout.
func (m *manifest) checkShutdownBudget(t *testing.T, p *proxyPod) {
	spec := &p.dep.Spec.Template.Spec
	grace := 30 * time.Second // Kubernetes' default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	var sleeps time.Duration
	for _, c := range append(append([]container(nil), spec.InitContainers...), spec.Containers...) {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			if s := c.Lifecycle.PreStop.Sleep; s != nil {
				sleeps += time.Duration(s.Seconds) * time.Second
			}
			if c.Lifecycle.PreStop.Exec != nil && c.Name == "pauseproxy" {
				t.Errorf("%s: pauseproxy preStop exec: the image has no shell or sleep; use the sleep action", m.file)
			}
		}
	}
	if need := sleeps + p.cfg.Proxy.ShutdownTimeout; grace <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %v <= preStop sleeps %v + shutdown_timeout %v: SIGKILL would cut the drain", m.file, grace, sleeps, p.cfg.Proxy.ShutdownTimeout)
	}
}

// checkContainer: runs as the image's non-root user, read-only, with
// resources set.
func (m *manifest) checkContainer(t *testing.T, p *proxyPod) {
	sc := p.c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: pauseproxy has no securityContext", m.file)
	default:
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: want runAsNonRoot: true", m.file)
		}
		if sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != imageUser(t) {
			t.Errorf("%s: runAsUser should be the image's USER %s", m.file, imageUser(t))
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: want readOnlyRootFilesystem: true (pauseproxy writes no file)", m.file)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: want allowPrivilegeEscalation: false", m.file)
		}
	}
	r := p.c.Resources
	if r.Requests["cpu"] == "" || r.Requests["memory"] == "" || r.Limits["memory"] == "" {
		t.Errorf("%s: want cpu and memory requests and a memory limit, got %+v", m.file, r)
	}
	if _, err := quantityBytes(r.Limits["memory"]); err != nil {
		t.Errorf("%s: limits.memory: %v", m.file, err)
	}
	// Other containers' Secret references must resolve too.
	for _, c := range append(append([]container(nil), p.dep.Spec.Template.Spec.InitContainers...), p.dep.Spec.Template.Spec.Containers...) {
		m.containerEnv(t, &c)
	}
}

// checkSidecar: the proxy is reachable only inside the Pod, and each
// application container's DATABASE_URL leads to it.
func (m *manifest) checkSidecar(t *testing.T, p *proxyPod) {
	px := &p.cfg.Proxy
	if px.ListenAddr != "" && !isLoopback(px.ListenAddr) {
		t.Errorf("%s: sidecar listen_addr %q: want loopback, so that only the Pod reaches it", m.file, px.ListenAddr)
	}
	spec := &p.dep.Spec.Template.Spec
	if px.UnixSocketDir != "" && !sharedEmptyDir(spec, p.c, px.UnixSocketDir) {
		t.Errorf("%s: unix_socket_dir %s is not an emptyDir mounted in the proxy and an application container", m.file, px.UnixSocketDir)
	}
	apps := 0
	for i := range spec.Containers {
		c := &spec.Containers[i]
		env := m.containerEnv(t, c)
		dsn, ok := env["DATABASE_URL"]
		if !ok {
			continue
		}
		apps++
		m.checkDSN(t, p, c, dsn)
	}
	if apps == 0 {
		t.Errorf("%s: no application container sets DATABASE_URL", m.file)
	}
}

// checkDSN: dsn names the proxy's TCP address or socket, a database and a
// user it knows, and no TLS the proxy does not offer.
func (m *manifest) checkDSN(t *testing.T, p *proxyPod, c *container, dsn string) {
	px := &p.cfg.Proxy
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Errorf("%s: %s: DATABASE_URL %q: want a postgres:// URL (%v)", m.file, c.Name, dsn, err)
		return
	}
	q := u.Query()
	port := u.Port()
	if port == "" {
		port = q.Get("port")
	}
	if port != strconv.Itoa(px.ListenPort) {
		t.Errorf("%s: %s: DATABASE_URL port %q, want listen_port %d", m.file, c.Name, port, px.ListenPort)
	}
	switch host := u.Hostname(); {
	case host == "" && q.Get("host") != "":
		if q.Get("host") != px.UnixSocketDir {
			t.Errorf("%s: %s: DATABASE_URL socket directory %s, want unix_socket_dir %s", m.file, c.Name, q.Get("host"), px.UnixSocketDir)
		}
	case host != px.ListenAddr && !(isLoopback(host) && px.ListenAddr == "0.0.0.0"):
		t.Errorf("%s: %s: DATABASE_URL host %q, want listen_addr %q", m.file, c.Name, host, px.ListenAddr)
	}
	if db := strings.TrimPrefix(u.Path, "/"); p.cfg.Databases[db] == nil && p.cfg.Databases["*"] == nil {
		t.Errorf("%s: %s: DATABASE_URL database %q is not in [databases]", m.file, c.Name, db)
	}
	if user := u.User.Username(); p.cfg.Users[user] == nil || p.cfg.Users[user].Password == "" {
		t.Errorf("%s: %s: DATABASE_URL user %q has no password in [users]", m.file, c.Name, user)
	}
	if mode := q.Get("sslmode"); px.ClientTLS.SSLMode == "disable" && mode != "" && mode != "disable" && mode != "prefer" && mode != "allow" {
		t.Errorf("%s: %s: DATABASE_URL sslmode=%s but client_tls_sslmode is disable", m.file, c.Name, mode)
	}
}

// sharedEmptyDir reports whether dir is an emptyDir mounted in the proxy
// and in at least one application container.
func sharedEmptyDir(spec *podSpec, proxy *container, dir string) bool {
	volumeAt := func(c *container) string {
		for _, vm := range c.VolumeMounts {
			if path.Clean(vm.MountPath) == path.Clean(dir) {
				return vm.Name
			}
		}
		return ""
	}
	name := volumeAt(proxy)
	if v := podVolume(spec, name); name == "" || v == nil || v.EmptyDir == nil {
		return false
	}
	for i := range spec.Containers {
		if volumeAt(&spec.Containers[i]) == name {
			return true
		}
	}
	return false
}

// checkCentral: replicas behind a Service that reaches listen_port, with
// a disruption budget and a rollout that keeps capacity.
func (m *manifest) checkCentral(t *testing.T, p *proxyPod) {
	px := &p.cfg.Proxy
	if isLoopback(px.ListenAddr) || px.ListenAddr == "" {
		t.Errorf("%s: central listen_addr %q: clients come from other Pods", m.file, px.ListenAddr)
	}
	if p.dep.Spec.Replicas < 2 {
		t.Errorf("%s: %d replicas: a central pool wants several", m.file, p.dep.Spec.Replicas)
	}
	if len(p.cfg.Proxy.AdminUsers) == 0 {
		t.Errorf("%s: no admin_users: nothing could PAUSE the replicas for a switchover", m.file)
	}
	labels := p.dep.Spec.Template.Metadata.Labels
	reaches := false
	for _, s := range m.objs.Services {
		if !selects(s.Spec.Selector, labels) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			port, ok := resolvePort(p.c, sp.TargetPort)
			if !ok {
				t.Errorf("%s: Service %s targetPort %s is no port of the container", m.file, s.Metadata.Name, sp.TargetPort)
			}
			if port == px.ListenPort {
				reaches = true
			}
		}
	}
	if !reaches {
		t.Errorf("%s: no Service reaches listen_port %d", m.file, px.ListenPort)
	}
	pdb := false
	for _, b := range m.objs.PDBs {
		pdb = pdb || selects(b.Spec.Selector.MatchLabels, labels)
	}
	if !pdb {
		t.Errorf("%s: no PodDisruptionBudget covers the replicas", m.file)
	}
	if s := p.dep.Spec.Strategy; s == nil || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable.String() != "0" {
		t.Errorf("%s: want a rolling update with maxUnavailable: 0", m.file)
	}
}

// checkSelectors: every Deployment's selector matches its Pods, and every
// Service and PodDisruptionBudget selects one of the file's Deployments.
func (m *manifest) checkSelectors(t *testing.T) {
	var podLabels []map[string]string
	for _, d := range m.objs.Deployments {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: Deployment %s: selector does not match its Pod labels", m.file, d.Metadata.Name)
		}
		podLabels = append(podLabels, d.Spec.Template.Metadata.Labels)
	}
	selected := func(sel map[string]string) bool {
		for _, l := range podLabels {
			if selects(sel, l) {
				return true
			}
		}
		return false
	}
	for _, s := range m.objs.Services {
		if !selected(s.Spec.Selector) {
			t.Errorf("%s: Service %s selects no Pod of this file", m.file, s.Metadata.Name)
		}
	}
	for _, b := range m.objs.PDBs {
		if !selected(b.Spec.Selector.MatchLabels) {
			t.Errorf("%s: PodDisruptionBudget %s selects no Pod of this file", m.file, b.Metadata.Name)
		}
	}
}
