package charttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	release   = "idp"
	namespace = "agentidp"
)

// coreServices are the services every values file must define (the schema
// requires them); all of them are enabled by default.
var coreServices = []string{"analytics", "billing", "did", "federation", "gateway", "tier", "token", "webhook"}

// upstreamURLs are the gateway's env vars of the services added after the
// first four (unset: the gateway answers 404 on their routes).
var upstreamURLs = map[string]string{
	"webhook":    "WEBHOOK_SERVICE_URL",
	"did":        "DID_SERVICE_URL",
	"federation": "FEDERATION_SERVICE_URL",
	"billing":    "BILLING_SERVICE_URL",
}

// enabledServices lists the services values.yaml enables, sorted: the
// per-service assertions run over this list, so a service added to the
// chart is checked without editing the tests.
func enabledServices(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Services map[string]struct {
			Enabled bool `json:"enabled"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	var out []string
	for name, s := range v.Services {
		if s.Enabled {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	for _, c := range coreServices {
		if !slices.Contains(out, c) {
			t.Fatalf("values.yaml does not enable %s (enabled: %v)", c, out)
		}
	}
	return out
}

// chartDir is the chart under test, relative to this package.
func chartDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "agentidp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "Chart.yaml")); err != nil {
		t.Fatalf("chart not found at %s: %v", d, err)
	}
	return d
}

// helmBin finds helm in $HELM or PATH. Absent: fail under CI=true, skip otherwise.
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err == nil {
			return h
		}
		if p, err := exec.LookPath(h); err == nil {
			return p
		}
		failOrSkip(t, fmt.Sprintf("HELM=%s is not an executable", h))
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	// `go install helm.sh/helm/v3/cmd/helm` puts it in GOPATH/bin, often not in PATH.
	if gp := goBin(); gp != "" {
		if _, err := os.Stat(filepath.Join(gp, "helm")); err == nil {
			return filepath.Join(gp, "helm")
		}
	}
	failOrSkip(t, "helm binary not found in $HELM or PATH (install: go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	return ""
}

func goBin() string {
	if b := os.Getenv("GOBIN"); b != "" {
		return b
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(strings.Split(gp, string(os.PathListSeparator))[0], "bin")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, "go", "bin")
	}
	return ""
}

func failOrSkip(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", reason)
	}
	t.Skip(reason)
}

// runHelm runs helm with args and returns stdout; err carries stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin(t), args...)
	// Isolate from any user helm configuration or kube context.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "data"),
		"KUBECONFIG="+filepath.Join(tmp, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

func template(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"template", release, chartDir(t), "--namespace", namespace}, extra...)
	return runHelm(t, args...)
}

// manifests is one rendering, decoded strictly.
type manifests struct {
	deployments     map[string]*appsv1.Deployment // by component
	services        map[string]*corev1.Service
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
	netpols         map[string]*networkingv1.NetworkPolicy // by metadata.name
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	ingresses       []*networkingv1.Ingress
	jobs            []*batchv1.Job
	serviceMonitors []*serviceMonitor
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders; decoding is strict, so any other field fails the test.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
			Any        bool     `json:"any,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML stream, dropping empty and
// comment-only documents.
func splitDocs(s string) []string {
	var out []string
	for _, d := range docSep.Split(s, -1) {
		content := false
		for _, l := range strings.Split(d, "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				content = true
				break
			}
		}
		if content {
			out = append(out, d)
		}
	}
	return out
}

func strict(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("strict decode into %T: %v\n---\n%s", into, err, doc)
	}
}

func decode(t *testing.T, out string) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		netpols:     map[string]*networkingv1.NetworkPolicy{},
	}
	docs := splitDocs(out)
	if len(docs) == 0 {
		t.Fatal("helm template rendered no documents")
	}
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		component := func(meta metav1.ObjectMeta) string {
			c := meta.Labels["app.kubernetes.io/component"]
			if c == "" {
				t.Fatalf("%s %s has no app.kubernetes.io/component label", tm.Kind, meta.Name)
			}
			return c
		}
		put := func(kind, c string, seen bool) {
			if seen {
				t.Fatalf("two %s for component %q", kind, c)
			}
		}
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			var o appsv1.Deployment
			strict(t, doc, &o)
			c := component(o.ObjectMeta)
			_, dup := m.deployments[c]
			put(tm.Kind, c, dup)
			m.deployments[c] = &o
		case "v1/Service":
			var o corev1.Service
			strict(t, doc, &o)
			c := component(o.ObjectMeta)
			_, dup := m.services[c]
			put(tm.Kind, c, dup)
			m.services[c] = &o
		case "autoscaling/v2/HorizontalPodAutoscaler":
			var o autoscalingv2.HorizontalPodAutoscaler
			strict(t, doc, &o)
			c := component(o.ObjectMeta)
			_, dup := m.hpas[c]
			put(tm.Kind, c, dup)
			m.hpas[c] = &o
		case "policy/v1/PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			strict(t, doc, &o)
			c := component(o.ObjectMeta)
			_, dup := m.pdbs[c]
			put(tm.Kind, c, dup)
			m.pdbs[c] = &o
		case "networking.k8s.io/v1/NetworkPolicy":
			var o networkingv1.NetworkPolicy
			strict(t, doc, &o)
			m.netpols[o.Name] = &o
		case "networking.k8s.io/v1/Ingress":
			var o networkingv1.Ingress
			strict(t, doc, &o)
			m.ingresses = append(m.ingresses, &o)
		case "v1/ConfigMap":
			var o corev1.ConfigMap
			strict(t, doc, &o)
			m.configMaps = append(m.configMaps, &o)
		case "v1/Secret":
			var o corev1.Secret
			strict(t, doc, &o)
			m.secrets = append(m.secrets, &o)
		case "batch/v1/Job":
			var o batchv1.Job
			strict(t, doc, &o)
			m.jobs = append(m.jobs, &o)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			var o serviceMonitor
			strict(t, doc, &o)
			m.serviceMonitors = append(m.serviceMonitors, &o)
		default:
			t.Fatalf("unexpected kind %s/%s rendered:\n%s", tm.APIVersion, tm.Kind, doc)
		}
	}
	return m
}

// expectation of one rendering.
type expect struct {
	services   []string          // enabled services
	hpa        bool              // HPA per service
	pdb        bool              // PDB per service
	tags       map[string]string // expected image tag per service
	ingress    bool
	monitor    bool
	bootstrap  bool
	vault      bool
	gatewayAll bool // gateway HTTP port open to every peer
}

func TestRenderDefaultValues(t *testing.T) {
	out, err := template(t)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	appVersion := chartAppVersion(t)
	svcs := enabledServices(t)
	tags := map[string]string{}
	for _, s := range svcs {
		tags[s] = appVersion
	}
	checkRendering(t, m, expect{
		services:   svcs,
		hpa:        false,
		pdb:        true,
		tags:       tags,
		gatewayAll: true,
	})
	gw := envOf(m.deployments["gateway"])
	for svc, name := range upstreamURLs {
		if want := fmt.Sprintf("http://%s-agentidp-%s:8080", release, svc); gw[name].Value != want {
			t.Errorf("gateway %s = %q, want %q", name, gw[name].Value, want)
		}
	}
	// Defaults wired from values.yaml.
	for svc, want := range map[string]map[string]string{
		"token":      {"TOKEN_KEY_ROTATION_INTERVAL": "720h", "TOKEN_KEY_PUBLISH_LEAD": "1h", "TOKEN_ROTATION_GRACE": "0s"},
		"tier":       {"TIER_DOWNGRADE_GRACE": "72h"},
		"analytics":  {"REDIS_URL": "redis://redis-master:6379/0"},
		"did":        {"DID_BASE_URL": "https://idp.example.com"},
		"federation": {"FEDERATION_AUDIENCE": "https://idp.example.com", "REDIS_URL": "redis://redis-master:6379/0"},
		"billing":    {"REDIS_URL": "redis://redis-master:6379/0"},
		"webhook":    {"WEBHOOK_TIMEOUT": "10s", "WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT": "16"},
		"gateway":    {"GATEWAY_REVOCATION_MAX_STALENESS": "2s", "GATEWAY_UPSTREAM_BREAKER_FAILURES": "5", "GATEWAY_UPSTREAM_BREAKER_COOLDOWN": "5s"},
	} {
		env := envOf(m.deployments[svc])
		for k, v := range want {
			if env[k].Value != v {
				t.Errorf("%s %s = %q, want %q", svc, k, env[k].Value, v)
			}
		}
	}
	for svc, absent := range map[string][]string{
		"did":     {"DID_WEB_HOST"},
		"webhook": {"WEBHOOK_ALLOW_PRIVATE", "REDIS_URL"},
		"gateway": {"GATEWAY_TRUSTED_PROXIES"},
		"billing": {"BILLING_PRICE_PRO", "BILLING_PRICE_ENTERPRISE", "BILLING_SUCCESS_URL", "BILLING_CANCEL_URL"},
	} {
		for _, k := range absent {
			if _, ok := envOf(m.deployments[svc])[k]; ok {
				t.Errorf("%s: %s set although its value is empty", svc, k)
			}
		}
	}
	// TOKEN_KEY_ENCRYPTION_KEY is required without Vault.
	if r := envOf(m.deployments["token"])["TOKEN_KEY_ENCRYPTION_KEY"].ValueFrom.SecretKeyRef; r.Optional != nil && *r.Optional {
		t.Error("TOKEN_KEY_ENCRYPTION_KEY is optional although Vault is disabled")
	}
}

func TestRenderAllOnValues(t *testing.T) {
	out, err := template(t, "-f", filepath.Join(chartDir(t), "ci", "all-on-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	checkRendering(t, m, expect{
		services: enabledServices(t),
		hpa:      true,
		pdb:      true,
		tags: map[string]string{
			"gateway": "1.4.0-gw", "token": "1.4.0-token", "tier": "1.4.1-tier", "analytics": "1.4.2-analytics",
			"webhook": "1.5.0-webhook", "did": "1.5.0-did", "federation": "1.5.0-federation", "billing": "1.5.0-billing",
		},
		ingress:   true,
		monitor:   true,
		bootstrap: true,
		vault:     true,
	})

	// Per-service tags must give distinct images.
	seen := map[string]string{}
	for name, d := range m.deployments {
		img := d.Spec.Template.Spec.Containers[0].Image
		if other, dup := seen[img]; dup {
			t.Errorf("services %s and %s share image %s although their tags differ", name, other, img)
		}
		seen[img] = name
		if !strings.HasPrefix(img, "registry.example.com/agentidp/agentidp-"+name+":") {
			t.Errorf("%s image %q does not use global.imageRegistry", name, img)
		}
	}
	// PDB: minAvailable wins for the gateway, a percentage is kept for token.
	if p := m.pdbs["gateway"]; p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 2 || p.Spec.MaxUnavailable != nil {
		t.Errorf("gateway PDB: want minAvailable 2 only, got %+v", p.Spec)
	}
	if p := m.pdbs["token"]; p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.String() != "25%" {
		t.Errorf("token PDB: want maxUnavailable 25%%, got %+v", p.Spec)
	}
	// Token: EdDSA and the memory HPA metric.
	tok := envOf(m.deployments["token"])
	if tok["TOKEN_SIGNING_ALG"].Value != "EdDSA" || tok["TOKEN_TTL"].Value != "30m" {
		t.Errorf("token config not wired: alg=%q ttl=%q", tok["TOKEN_SIGNING_ALG"].Value, tok["TOKEN_TTL"].Value)
	}
	if n := len(m.hpas["token"].Spec.Metrics); n != 2 {
		t.Errorf("token HPA: want cpu+memory metrics, got %d", n)
	}
	// Redis from a Secret.
	if r := tok["REDIS_URL"]; r.ValueFrom == nil || r.ValueFrom.SecretKeyRef == nil || r.ValueFrom.SecretKeyRef.Name != "agentidp-redis" {
		t.Errorf("REDIS_URL should come from Secret agentidp-redis: %+v", r)
	}
	gw := m.deployments["gateway"]
	if gw.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" || len(gw.Spec.Template.Spec.Tolerations) != 1 || gw.Spec.Template.Spec.Affinity == nil {
		t.Error("gateway nodeSelector/tolerations/affinity not rendered")
	}
	if envOf(gw)["EXTRA_FLAG"].Value != "1" || envOf(gw)["GATEWAY_ROUTES"].Value == "" {
		t.Error("gateway extra env / GATEWAY_ROUTES not rendered")
	}
	if len(gw.Spec.Template.Spec.ImagePullSecrets) != 1 || gw.Spec.Template.Spec.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("imagePullSecrets not rendered: %+v", gw.Spec.Template.Spec.ImagePullSecrets)
	}
	// Every configured value of the new services reaches its env var.
	for svc, want := range map[string]map[string]string{
		"token": {"TOKEN_KEY_ROTATION_INTERVAL": "168h", "TOKEN_KEY_PUBLISH_LEAD": "2h", "TOKEN_ROTATION_GRACE": "10m"},
		"tier":  {"TIER_DOWNGRADE_GRACE": "24h"},
		"webhook": {"WEBHOOK_ALLOW_PRIVATE": "10.20.0.0/16, 192.168.5.0/24", "WEBHOOK_TIMEOUT": "15s",
			"WEBHOOK_RETRY_SCHEDULE": "10s,1m,10m,1h", "WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT": "8"},
		// global.publicUrl has a trailing slash in all-on-values: trimmed.
		"did":        {"DID_BASE_URL": "https://idp.example.com", "DID_WEB_HOST": "idp.example.com"},
		"federation": {"FEDERATION_AUDIENCE": "https://idp.example.com/partners", "FEDERATION_ALLOW_PRIVATE": "10.30.0.0/16"},
		"billing": {"BILLING_PRICE_PRO": "price_pro_123", "BILLING_PRICE_ENTERPRISE": "price_ent_456",
			"BILLING_SUCCESS_URL": "https://app.example.com/billing?checkout=success",
			"BILLING_CANCEL_URL":  "https://app.example.com/billing?checkout=cancel"},
	} {
		env := envOf(m.deployments[svc])
		for k, v := range want {
			if env[k].Value != v {
				t.Errorf("%s %s = %q, want %q", svc, k, env[k].Value, v)
			}
		}
	}
	// Shared secrets of the new services come from the shared Secret (required).
	for svc, name := range map[string]string{
		"webhook": "WEBHOOK_SECRET_KEY", "did": "DID_KEY_ENCRYPTION_KEY", "analytics": "ANALYTICS_CHECKPOINT_KEY",
	} {
		e := envOf(m.deployments[svc])[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "agentidp-prod-secrets" ||
			e.ValueFrom.SecretKeyRef.Key != name || (e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional) {
			t.Errorf("%s %s: want a required ref to agentidp-prod-secrets/%s, got %+v", svc, name, name, e.ValueFrom)
		}
	}
	// Stripe keys: optional refs into the configured Secret (billing runs disabled without them).
	for _, name := range []string{"STRIPE_SECRET_KEY", "BILLING_STRIPE_WEBHOOK_SECRET"} {
		e := envOf(m.deployments["billing"])[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "agentidp-stripe-live" ||
			e.ValueFrom.SecretKeyRef.Optional == nil || !*e.ValueFrom.SecretKeyRef.Optional {
			t.Errorf("billing %s: want an optional ref to agentidp-stripe-live, got %+v", name, e.ValueFrom)
		}
	}
	// With Vault the token service's local KEK is optional.
	if r := tok["TOKEN_KEY_ENCRYPTION_KEY"].ValueFrom.SecretKeyRef; r.Optional == nil || !*r.Optional {
		t.Error("TOKEN_KEY_ENCRYPTION_KEY must be optional when Vault is enabled")
	}
}

// Disabling the four newer services removes their resources and the
// gateway's URLs for them (the gateway then answers 404 on their routes).
func TestRenderNewServicesDisabled(t *testing.T) {
	args := []string{}
	for svc := range upstreamURLs {
		args = append(args, "--set", "services."+svc+".enabled=false")
	}
	out, err := template(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	var rest []string
	for _, s := range enabledServices(t) {
		if _, gone := upstreamURLs[s]; !gone {
			rest = append(rest, s)
		}
	}
	tags := map[string]string{}
	for _, s := range rest {
		tags[s] = chartAppVersion(t)
	}
	checkRendering(t, m, expect{services: rest, pdb: true, tags: tags, gatewayAll: true})
	gw := envOf(m.deployments["gateway"])
	for svc, name := range upstreamURLs {
		if _, ok := gw[name]; ok {
			t.Errorf("gateway still has %s although %s is disabled", name, svc)
		}
		if _, ok := m.services[svc]; ok {
			t.Errorf("disabled %s still has a Service", svc)
		}
	}
	for _, np := range m.netpols {
		for _, svc := range []string{"webhook", "did", "federation", "billing"} {
			if np.Labels["app.kubernetes.io/component"] == svc {
				t.Errorf("disabled %s still has NetworkPolicy %s", svc, np.Name)
			}
		}
	}
}

func TestRenderServiceDisabled(t *testing.T) {
	out, err := template(t, "--set", "services.analytics.enabled=false", "--set", "services.tier.autoscaling.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if _, ok := m.deployments["analytics"]; ok {
		t.Error("disabled analytics still has a Deployment")
	}
	if _, ok := envOf(m.deployments["gateway"])["ANALYTICS_SERVICE_URL"]; ok {
		t.Error("gateway still points at the disabled analytics service")
	}
	if _, ok := m.hpas["tier"]; !ok || len(m.hpas) != 1 {
		t.Errorf("want exactly one HPA (tier), got %d", len(m.hpas))
	}
	if m.deployments["tier"].Spec.Replicas != nil {
		t.Error("an autoscaled Deployment must not set replicas (it would fight the HPA on upgrade)")
	}
}

// With explicit global.secrets values the chart renders a Secret from exactly
// those values and points every secret env var at it.
func TestExplicitSecretValues(t *testing.T) {
	ik := strings.Repeat("ab", 32)
	wk, dk, ck := strings.Repeat("cd", 32), strings.Repeat("ef", 32), strings.Repeat("01", 32)
	out, err := template(t,
		"--set", "global.secrets.internalKey="+ik,
		"--set", "global.secrets.tokenSecretPepper=pepper-from-user",
		"--set", "global.secrets.tokenKeyEncryptionKey=kek-from-user",
		"--set", "global.secrets.webhookSecretKey="+wk,
		"--set", "global.secrets.didKeyEncryptionKey="+dk,
		"--set", "global.secrets.analyticsCheckpointKey="+ck)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.secrets) != 1 {
		t.Fatalf("want 1 Secret, got %d", len(m.secrets))
	}
	s := m.secrets[0]
	want := map[string]string{
		"AGENTIDP_INTERNAL_KEY":    ik,
		"TOKEN_SECRET_PEPPER":      "pepper-from-user",
		"TOKEN_KEY_ENCRYPTION_KEY": "kek-from-user",
		"WEBHOOK_SECRET_KEY":       wk,
		"DID_KEY_ENCRYPTION_KEY":   dk,
		"ANALYTICS_CHECKPOINT_KEY": ck,
	}
	if len(s.Data)+len(s.StringData) != len(want) {
		t.Errorf("Secret has keys %v, want exactly %v", keys(s.Data), want)
	}
	for k, v := range want {
		if string(s.Data[k]) != v {
			t.Errorf("Secret %s = %q, want the user-supplied value", k, s.Data[k])
		}
	}
	for _, name := range []string{"AGENTIDP_INTERNAL_KEY", "TOKEN_SECRET_PEPPER", "TOKEN_KEY_ENCRYPTION_KEY"} {
		e := envOf(m.deployments["token"])[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != s.Name {
			t.Errorf("token %s does not read the rendered Secret %s: %+v", name, s.Name, e)
		}
	}
	for svc, name := range map[string]string{"webhook": "WEBHOOK_SECRET_KEY", "did": "DID_KEY_ENCRYPTION_KEY", "analytics": "ANALYTICS_CHECKPOINT_KEY"} {
		e := envOf(m.deployments[svc])[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != s.Name {
			t.Errorf("%s %s does not read the rendered Secret %s: %+v", svc, name, s.Name, e)
		}
	}
	if m.deployments["token"].Spec.Template.Annotations["checksum/secret"] == "" {
		t.Error("pods do not roll when the rendered Secret changes (no checksum/secret annotation)")
	}
}

// A rendered Secret needs only the keys of enabled services: without webhook
// and did, and with Vault (no local KEK), those values may be left empty.
func TestExplicitSecretValuesMinimal(t *testing.T) {
	out, err := template(t,
		"--set", "global.secrets.internalKey="+strings.Repeat("ab", 32),
		"--set", "global.secrets.tokenSecretPepper=pepper-from-user",
		"--set", "global.secrets.analyticsCheckpointKey="+strings.Repeat("01", 32),
		"--set", "services.webhook.enabled=false", "--set", "services.did.enabled=false",
		"--set", "global.vault.enabled=true", "--set", "global.vault.addr=https://vault:8200")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.secrets) != 1 {
		t.Fatalf("want 1 Secret, got %d", len(m.secrets))
	}
	if got := keys(m.secrets[0].Data); !slices.Equal(got, []string{"AGENTIDP_INTERNAL_KEY", "ANALYTICS_CHECKPOINT_KEY", "TOKEN_SECRET_PEPPER"}) {
		t.Errorf("Secret keys %v", got)
	}
}

func TestExplicitSecretValuesMissingNewKeyFails(t *testing.T) {
	_, err := template(t,
		"--set", "global.secrets.internalKey="+strings.Repeat("ab", 32),
		"--set", "global.secrets.tokenSecretPepper=pepper-from-user",
		"--set", "global.secrets.tokenKeyEncryptionKey=kek-from-user",
		"--set", "global.secrets.analyticsCheckpointKey="+strings.Repeat("01", 32))
	if err == nil || !strings.Contains(err.Error(), "global.secrets.webhookSecretKey must be set") {
		t.Fatalf("want an error naming webhookSecretKey, got %v", err)
	}
}

func TestPartialSecretValuesFail(t *testing.T) {
	_, err := template(t, "--set", "global.secrets.tokenSecretPepper=only-this-one")
	if err == nil || !strings.Contains(err.Error(), "must be set when any global.secrets value is set") {
		t.Fatalf("want a clear error for partial global.secrets, got %v", err)
	}
}

func TestLint(t *testing.T) {
	for _, extra := range [][]string{nil, {"-f", filepath.Join(chartDir(t), "ci", "all-on-values.yaml")}} {
		args := append([]string{"lint", "--strict", chartDir(t)}, extra...)
		if out, err := runHelm(t, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// Each testdata/*.yaml is an invalid values file that values.schema.json
// must reject (not a template error further down).
func TestInvalidValuesRejectedBySchema(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("expected invalid values files in testdata/, found %d", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			t.Parallel()
			out, err := template(t, "-f", f)
			if err == nil {
				t.Fatalf("helm template accepted invalid values %s:\n%.400s", f, out)
			}
			if !strings.Contains(err.Error(), "schema") {
				t.Fatalf("failed, but not because of values.schema.json: %v", err)
			}
		})
	}
}

// The chart carries copies of policies/authz.rego and policies/data/scopes.json
// (a chart cannot read outside its directory); they must not drift.
func TestPolicyFilesInSync(t *testing.T) {
	root := filepath.Join("..", "..", "..", "policies")
	for src, dst := range map[string]string{
		filepath.Join(root, "authz.rego"):          filepath.Join(chartDir(t), "files", "authz.rego"),
		filepath.Join(root, "data", "scopes.json"): filepath.Join(chartDir(t), "files", "data", "scopes.json"),
	} {
		want, err := os.ReadFile(src)
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("%s not present (chart built outside the repository)", src)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("%s differs from %s: run deploy/helm/sync-policy.sh", dst, src)
		}
	}
}

func checkRendering(t *testing.T, m *manifests, e expect) {
	t.Helper()
	var gotSvcs []string
	for c := range m.deployments {
		gotSvcs = append(gotSvcs, c)
	}
	sort.Strings(gotSvcs)
	if !slices.Equal(gotSvcs, e.services) {
		t.Fatalf("Deployments for %v, want %v", gotSvcs, e.services)
	}
	gatewaySel := m.deployments["gateway"].Spec.Selector.MatchLabels

	for _, name := range e.services {
		t.Run(name, func(t *testing.T) {
			d := m.deployments[name]
			checkDeployment(t, name, d, e.tags[name])
			sel := d.Spec.Selector.MatchLabels

			svc, ok := m.services[name]
			if !ok {
				t.Fatal("no Service")
			}
			if !mapsEqual(svc.Spec.Selector, sel) {
				t.Errorf("Service selector %v != Deployment selector %v", svc.Spec.Selector, sel)
			}

			hpa, ok := m.hpas[name]
			if ok != e.hpa {
				t.Errorf("HPA present=%v, want %v", ok, e.hpa)
			}
			if ok {
				if hpa.Spec.ScaleTargetRef.Name != d.Name || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
					t.Errorf("HPA targets %+v, want Deployment %s", hpa.Spec.ScaleTargetRef, d.Name)
				}
				if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
					t.Errorf("HPA bounds min=%v max=%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
				}
				if d.Spec.Replicas != nil {
					t.Error("Deployment sets replicas although an HPA manages it")
				}
			}

			pdb, ok := m.pdbs[name]
			if ok != e.pdb {
				t.Errorf("PDB present=%v, want %v", ok, e.pdb)
			}
			if ok {
				if pdb.Spec.Selector == nil || !mapsEqual(pdb.Spec.Selector.MatchLabels, sel) {
					t.Errorf("PDB selector does not match the Deployment")
				}
				if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
					t.Errorf("PDB must set exactly one of minAvailable/maxUnavailable: %+v", pdb.Spec)
				}
			}

			checkNetworkPolicy(t, name, m, sel, gatewaySel, e.gatewayAll)
		})
	}

	// Default-deny ingress for every pod of the release.
	var deny *networkingv1.NetworkPolicy
	for _, np := range m.netpols {
		if len(np.Spec.Ingress) == 0 && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			deny = np
		}
	}
	if deny == nil {
		t.Error("no default-deny ingress NetworkPolicy")
	} else if deny.Spec.PodSelector.MatchLabels["app.kubernetes.io/instance"] != release {
		t.Errorf("default-deny selects %v, want every pod of release %s", deny.Spec.PodSelector.MatchLabels, release)
	}

	// Secrets: with values that set none, the chart renders none.
	if len(m.secrets) != 0 {
		t.Errorf("chart rendered %d Secret(s) from default values", len(m.secrets))
	}
	checkNoPlainSecrets(t, m)

	// Policy ConfigMap equals the chart files and is mounted as OPA_POLICY_DIR.
	checkPolicy(t, m)

	if (len(m.ingresses) == 1) != e.ingress {
		t.Errorf("Ingress count %d, want present=%v", len(m.ingresses), e.ingress)
	}
	for _, ing := range m.ingresses {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Name != m.services["gateway"].Name {
					t.Errorf("Ingress routes to %+v, want the gateway Service only", p.Backend)
				}
			}
		}
	}
	if (len(m.serviceMonitors) == 1) != e.monitor {
		t.Errorf("ServiceMonitor count %d, want present=%v", len(m.serviceMonitors), e.monitor)
	}
	for _, sm := range m.serviceMonitors {
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "internal" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v, want port internal /metrics", sm.Spec.Endpoints)
		}
		for _, svc := range m.services {
			if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
				t.Errorf("ServiceMonitor does not select Service %s", svc.Name)
			}
		}
	}
	if (len(m.jobs) == 1) != e.bootstrap {
		t.Errorf("bootstrap Job count %d, want present=%v", len(m.jobs), e.bootstrap)
	}
	for _, j := range m.jobs {
		if j.Annotations["helm.sh/hook"] != "post-install" {
			t.Errorf("bootstrap Job hook = %q", j.Annotations["helm.sh/hook"])
		}
		c := j.Spec.Template.Spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != "bootstrap" || !strings.Contains(c.Image, "/agentidp:") {
			t.Errorf("bootstrap Job runs %s %v, want the agentidp image with `bootstrap`", c.Image, c.Args)
		}
		if _, ok := envByName(c.Env)["DATABASE_URL"]; !ok {
			t.Error("bootstrap Job has no DATABASE_URL")
		}
		checkContainerSecurity(t, "bootstrap", j.Spec.Template.Spec.SecurityContext, c)
	}

	// Vault is wired into token only (the services with vault: true).
	for name, d := range m.deployments {
		_, has := envOf(d)["VAULT_ADDR"]
		if want := e.vault && name == "token"; has != want {
			t.Errorf("%s: VAULT_ADDR present=%v, want %v", name, has, want)
		}
	}
	if e.vault {
		env := envOf(m.deployments["token"])
		for _, k := range []string{"VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_MOUNT", "VAULT_PATH_PREFIX", "VAULT_CACERT"} {
			if _, ok := env[k]; !ok {
				t.Errorf("token: %s missing with vault enabled", k)
			}
		}
	}

	// The gateway knows where every other enabled service lives.
	gwEnv := envOf(m.deployments["gateway"])
	for _, name := range e.services {
		if name == "gateway" {
			continue
		}
		want := fmt.Sprintf("http://%s:8080", m.services[name].Name)
		if got := gwEnv[strings.ToUpper(name)+"_SERVICE_URL"].Value; got != want {
			t.Errorf("gateway %s_SERVICE_URL = %q, want %q", strings.ToUpper(name), got, want)
		}
	}
}

func checkDeployment(t *testing.T, name string, d *appsv1.Deployment, wantTag string) {
	t.Helper()
	ps := d.Spec.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(ps.Containers))
	}
	c := ps.Containers[0]
	if !strings.HasSuffix(c.Image, ":"+wantTag) {
		t.Errorf("image %q, want tag %q", c.Image, wantTag)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("service account token is mounted (services never call the Kubernetes API)")
	}
	for probeName, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"liveness": {c.LivenessProbe, "/health/live"}, "readiness": {c.ReadinessProbe, "/health/ready"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", probeName)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "internal" {
			t.Errorf("%s probe %s on port %s, want %s on the internal port", probeName, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["internal"] != 9090 {
		t.Errorf("container ports %v, want http 8080 internal 9090", ports)
	}
	env := envOf(d)
	if env["HTTP_ADDR"].Value != ":8080" || env["INTERNAL_ADDR"].Value != ":9090" {
		t.Errorf("HTTP_ADDR=%q INTERNAL_ADDR=%q", env["HTTP_ADDR"].Value, env["INTERNAL_ADDR"].Value)
	}
	for _, k := range []string{"AGENTIDP_INTERNAL_KEY", "NATS_URL", "LOG_LEVEL"} {
		if _, ok := env[k]; !ok {
			t.Errorf("env %s missing", k)
		}
	}
	if name != "gateway" {
		if _, ok := env["DATABASE_URL"]; !ok {
			t.Error("DATABASE_URL missing")
		}
		if env["DATABASE_SCHEMA"].Value != name {
			t.Errorf("DATABASE_SCHEMA = %q, want %q", env["DATABASE_SCHEMA"].Value, name)
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("no %s request", res)
		}
		if q, ok := c.Resources.Limits[res]; !ok || q.IsZero() {
			t.Errorf("no %s limit", res)
		}
	}
	checkContainerSecurity(t, name, ps.SecurityContext, c)
	tmp := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/tmp" {
			tmp = true
		}
	}
	if !tmp {
		t.Error("/tmp is not mounted (read-only root filesystem)")
	}
	if len(ps.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	for _, tsc := range ps.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !mapsEqual(tsc.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("topology spread on %s does not select this service's pods", tsc.TopologyKey)
		}
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Error("Deployment selector does not match its pod labels")
	}
}

func checkContainerSecurity(t *testing.T, name string, pod *corev1.PodSecurityContext, c corev1.Container) {
	t.Helper()
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Errorf("%s: pod runAsNonRoot not true", name)
	}
	if pod == nil || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile not RuntimeDefault", name)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("%s: no container securityContext", name)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot not true", name)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("%s: runAsUser %v, want 65532", name, sc.RunAsUser)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem not true", name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation not false", name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL")) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: capabilities %+v, want drop ALL and add none", name, sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: container seccompProfile not RuntimeDefault", name)
	}
}

// checkNetworkPolicy: the service's policy opens its HTTP port to the gateway
// only (to every peer for the gateway itself, when not narrowed) and its
// internal port to the Prometheus selector only.
func checkNetworkPolicy(t *testing.T, name string, m *manifests, sel, gatewaySel map[string]string, gatewayAll bool) {
	t.Helper()
	var np *networkingv1.NetworkPolicy
	for _, p := range m.netpols {
		if len(p.Spec.Ingress) > 0 && mapsEqual(p.Spec.PodSelector.MatchLabels, sel) {
			if np != nil {
				t.Fatalf("two NetworkPolicies select %s", name)
			}
			np = p
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy selects this service's pods")
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule without ports opens every port: %+v", rule)
			continue
		}
		for _, port := range rule.Ports {
			switch port.Port.String() {
			case "http":
				if name == "gateway" {
					if (len(rule.From) == 0) != gatewayAll {
						t.Errorf("gateway HTTP from-everywhere=%v, want %v", len(rule.From) == 0, gatewayAll)
					}
					continue
				}
				if len(rule.From) == 0 {
					t.Errorf("%s HTTP port is open to every peer; only the gateway's may be", name)
				}
				for _, peer := range rule.From {
					if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil ||
						!mapsEqual(peer.PodSelector.MatchLabels, gatewaySel) {
						t.Errorf("%s HTTP port admits %+v; want gateway pods only", name, peer)
					}
				}
			case "internal":
				if len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil || rule.From[0].PodSelector == nil {
					t.Errorf("%s internal port: want one peer with the Prometheus namespace+pod selector, got %+v", name, rule.From)
				}
			default:
				t.Errorf("%s: NetworkPolicy opens unexpected port %s", name, port.Port.String())
			}
		}
	}
}

// secretEnv are env vars that must never carry a literal value.
var secretEnv = []string{
	"AGENTIDP_INTERNAL_KEY", "TOKEN_SECRET_PEPPER", "TOKEN_KEY_ENCRYPTION_KEY",
	"DATABASE_URL", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID",
	"WEBHOOK_SECRET_KEY", "DID_KEY_ENCRYPTION_KEY", "ANALYTICS_CHECKPOINT_KEY",
	"STRIPE_SECRET_KEY", "BILLING_STRIPE_WEBHOOK_SECRET",
}

func checkNoPlainSecrets(t *testing.T, m *manifests) {
	t.Helper()
	var containers []corev1.Container
	for _, d := range m.deployments {
		containers = append(containers, d.Spec.Template.Spec.Containers...)
	}
	for _, j := range m.jobs {
		containers = append(containers, j.Spec.Template.Spec.Containers...)
	}
	for _, c := range containers {
		for _, e := range c.Env {
			if slices.Contains(secretEnv, e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				t.Errorf("%s: %s is not read from a Secret", c.Name, e.Name)
			}
		}
	}
}

func checkPolicy(t *testing.T, m *manifests) {
	t.Helper()
	var cm *corev1.ConfigMap
	for _, c := range m.configMaps {
		if c.Labels["app.kubernetes.io/component"] == "policy" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("no policy ConfigMap")
	}
	for key, file := range map[string]string{"authz.rego": "authz.rego", "scopes.json": filepath.Join("data", "scopes.json")} {
		want, err := os.ReadFile(filepath.Join(chartDir(t), "files", file))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimRight(cm.Data[key], "\n") != strings.TrimRight(string(want), "\n") {
			t.Errorf("policy ConfigMap %s differs from chart file files/%s", key, file)
		}
	}
	gw := m.deployments["gateway"]
	dir := envOf(gw)["OPA_POLICY_DIR"].Value
	mounted := false
	for _, vm := range gw.Spec.Template.Spec.Containers[0].VolumeMounts {
		if vm.MountPath == dir && vm.ReadOnly {
			mounted = true
		}
	}
	var paths []string
	for _, v := range gw.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			for _, it := range v.ConfigMap.Items {
				paths = append(paths, it.Path)
			}
		}
	}
	sort.Strings(paths)
	if !mounted || !slices.Equal(paths, []string{"authz.rego", "data/scopes.json"}) {
		t.Errorf("policy not mounted at OPA_POLICY_DIR=%q as authz.rego + data/scopes.json (paths %v)", dir, paths)
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %v", err)
	}
	return c.AppVersion
}

func envOf(d *appsv1.Deployment) map[string]corev1.EnvVar {
	return envByName(d.Spec.Template.Spec.Containers[0].Env)
}

func envByName(env []corev1.EnvVar) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range env {
		m[e.Name] = e
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// selects reports whether selector labels are a subset of labels.
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

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
