package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/eventlog"
)

// serveProc is a running `whocould serve`.
type serveProc struct {
	cmd     *exec.Cmd
	api     string
	nats    string
	token   string
	mu      sync.Mutex
	stderr  strings.Builder
	exited  chan struct{}
	exitErr error
}

func (p *serveProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startServe runs serve on dataDir with the given YAML configuration (ports 0: chosen by the
// system) and waits until it answers.
func startServe(t testing.TB, dataDir, config string) *serveProc {
	t.Helper()
	return startServeWith(t, dataDir, config)
}

// startServeWith is startServe with more arguments on serve's command line.
func startServeWith(t testing.TB, dataDir, config string, args ...string) *serveProc {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "whocould.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--config", cfgPath, "--data-dir", dataDir}, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "whocould serving" {
				ready <- m
			}
		}
		io.Copy(io.Discard, stderr)
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case m := <-ready:
		p.api, _ = m["api"].(string)
		p.nats, _ = m["nats"].(string)
	case <-p.exited:
		t.Fatalf("serve exited before serving: %v\n%s", p.exitErr, p.log())
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("serve not ready after 60s:\n%s", p.log())
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	p.token = strings.TrimSpace(string(b))
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop within 60s of SIGTERM:\n%s", p.log())
	}
	if p.exitErr != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", p.exitErr, p.log())
	}
}

func (p *serveProc) get(t testing.TB, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.api+path, nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (p *serveProc) post(t testing.TB, body []byte) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", p.api+"/v1/events", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events = %d %s", resp.StatusCode, b)
	}
	return m
}

func principalsOf(ans map[string]any) []string {
	var out []string
	ps, _ := ans["principals"].([]any)
	for _, p := range ps {
		out = append(out, p.(map[string]any)["principal"].(string))
	}
	return out
}

// waitPrincipals waits (30 s at most) until the who-could question path answers exactly want
// (principals joined by commas).
func waitPrincipals(t testing.TB, p *serveProc, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		_, ans := p.get(t, path)
		if got = principalsOf(ans); strings.Join(got, ",") == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s answers %v, want %s\n%s", path, got, want, p.log())
}

const serveTestConfig = `
nats:
  listen: 127.0.0.1:0
api:
  listen: 127.0.0.1:0
shutdown_timeout: 30s
`

// TestServe: events come in over HTTP and over NATS (changes and decisions on their subjects, a
// bad message among them), all become queryable, the bad one is dead-lettered, SIGTERM stops
// the service cleanly, and a restart answers the same.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, serveTestConfig)
	if code, _ := p.get(t, "/readyz"); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	grant := func(id, who string) []byte {
		return marshal(t, ev(id, event.GrantAdded, at, event.Data{Subject: who, Action: "db.table.drop", Resource: "db:prod/orders"}))
	}
	res := p.post(t, append(grant("h1", "user:ann"), '\n'))
	if res["accepted"] != 1.0 {
		t.Fatalf("POST: %v", res)
	}

	nc, err := nats.Connect(p.nats)
	if err != nil {
		t.Fatalf("connect to the embedded server at %q: %v", p.nats, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, who := range []string{"user:bob", "user:cy"} {
		if _, err := js.Publish(ctx, "whocould.in.changes.okta", grant(fmt.Sprintf("n%d", i), who)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "whocould.in.changes.okta", []byte(`{"specversion":"1.0","id":"broken"`)); err != nil {
		t.Fatal(err)
	}
	dec := marshal(t, ev("d1", event.Decision, at.Add(time.Hour), event.Data{Principal: "user:bob", Action: "db.table.drop", Resource: "db:prod/orders", Effect: event.Allow}))
	if _, err := js.Publish(ctx, "whocould.in.decisions.user.bob", dec); err != nil {
		t.Fatal(err)
	}

	who := "/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T02:14:00Z"
	waitPrincipals(t, p, who, "user:ann,user:bob,user:cy")
	deadline := time.Now().Add(30 * time.Second)
	var letters []any
	for time.Now().Before(deadline) && len(letters) == 0 {
		_, dl := p.get(t, "/v1/deadletters")
		letters, _ = dl["deadletters"].([]any)
	}
	if len(letters) != 1 || !strings.Contains(fmt.Sprint(letters[0]), "nats:whocould.in.changes.okta") {
		t.Fatalf("dead letters: %v", letters)
	}
	p.stop(t)

	p = startServe(t, dir, serveTestConfig)
	_, ans := p.get(t, who)
	if got := principalsOf(ans); strings.Join(got, ",") != "user:ann,user:bob,user:cy" {
		t.Fatalf("who-could after a restart: %v", got)
	}
	p.stop(t)
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ config, want string }{
		{"api:\n  lisen: 1.2.3.4:80\n", "field lisen not found"},
		{"targets: [ingest, frobnicate]\n", "targets[1]: unknown target \"frobnicate\""},
		{"api:\n  tokens:\n    - name: ci\n      sha256: abc\n      scopes: [read]\n", "api.tokens[0]: token ci: sha256"},
		{"kafka:\n  topics: [a]\n", "kafka.brokers: none given"},
		{"nats:\n  listen: nowhere\n", "nats.listen \"nowhere\""},
		{"targets: [api]\n", "api without projector"},
	} {
		path := writeFile(t, dir, "c.yaml", []byte(c.config))
		r := mustRun(t, 2, dir, nil, "serve", "--config", path, "--data-dir", filepath.Join(dir, "data"))
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("config %q: stderr %q lacks %q", c.config, r.stderr, c.want)
		}
	}
}

// TestDemoServes: the demo keeps the service running after its answers, and the curl command it
// prints answers with the token it points to.
func TestDemoServes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(bin, "demo", "--data-dir", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var curl string
	timeout := time.After(2 * time.Minute)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo stopped before serving: %s", stderr.String())
			}
			if strings.Contains(l, "curl ") && strings.Contains(l, "/v1/who-could?") && curl == "" {
				curl = l[strings.Index(l, "'")+1 : strings.LastIndex(l, "'")]
			}
			if strings.HasPrefix(l, "whocould is serving") {
				break wait
			}
		case <-timeout:
			t.Fatalf("the demo did not serve within 2 minutes: %s", stderr.String())
		}
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil || curl == "" {
		t.Fatalf("token %v, curl line %q", err, curl)
	}
	req, _ := http.NewRequest("GET", curl, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans map[string]any
	json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(principalsOf(ans)) == 0 {
		t.Fatalf("%s = %d %v", curl, resp.StatusCode, ans)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo after SIGTERM: %v\n%s", err, stderr.String())
	}
}

// TestImportToServer: import --server sends a file's events to a running service; the server
// refuses the invalid ones (dead-lettering them) and import reports each with its place in the
// file, exiting 2; a pretty-printed JSON array goes too.
func TestImportToServer(t *testing.T) {
	p := startServe(t, t.TempDir(), serveTestConfig)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	grant := func(id, who string) string {
		return string(marshal(t, ev(id, event.GrantAdded, at, event.Data{Subject: who, Action: "db.table.drop", Resource: "db:prod/orders"})))
	}
	tmp := t.TempDir()
	lines := writeFile(t, tmp, "mixed.jsonl", []byte(strings.Join([]string{
		grant("1", "user:ann"),
		`{"specversion":"1.0","id":"2","source":"x","type":"grant.added","time":"2026-01-05T10:00:00Z","data":{"subject":"user:bob"}}`,
		`{"specversion": broken`,
		grant("3", "user:cy"),
	}, "\n")+"\n"))
	r := runIn(t, "", nil, "import", "--server", p.api, "--token", p.token, "-o", "json", lines)
	if r.code != 2 {
		t.Fatalf("import --server with bad lines: %s", r)
	}
	sum := parseImport(t, r.stdout)
	if sum.Accepted != 2 || len(sum.Rejected) != 2 || !strings.Contains(string(sum.Rejected[0]), `"index": 1`) || !strings.Contains(string(sum.Rejected[1]), `"index": 2`) {
		t.Fatalf("summary %+v", sum)
	}
	var arr bytes.Buffer
	json.Indent(&arr, []byte("["+grant("4", "user:dee")+","+grant("1", "user:ann")+"]"), "", "  ")
	array := writeFile(t, tmp, "array.json", arr.Bytes())
	t.Setenv("WHOCOULD_TOKEN", p.token)
	r = mustRun(t, 0, "", nil, "import", "--server", p.api, "-o", "json", array)
	if sum = parseImport(t, r.stdout); sum.Accepted != 1 || sum.Duplicates != 1 {
		t.Fatalf("array summary %+v", sum)
	}
	_, ans := p.get(t, fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z&min_position=%d", sum.Projected))
	if got := principalsOf(ans); strings.Join(got, ",") != "user:ann,user:cy,user:dee" {
		t.Fatalf("who-could after import --server: %v", got)
	}
	_, dl := p.get(t, "/v1/deadletters")
	if letters, _ := dl["deadletters"].([]any); len(letters) != 1 {
		t.Fatalf("server dead letters: %v", dl)
	}
	// No token, or a wrong one: usage errors.
	t.Setenv("WHOCOULD_TOKEN", "")
	if r := runIn(t, "", nil, "import", "--server", p.api, lines); r.code != 2 || !strings.Contains(r.stderr, "needs a token") {
		t.Fatalf("no token: %s", r)
	}
	if r := runIn(t, "", nil, "import", "--server", p.api, "--token", "nope", lines); r.code != 2 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("wrong token: %s", r)
	}
}

// TestServeExternalNATSRestart: with the log and the inbox on an external NATS server, a restart
// of that server mid-stream loses nothing: the service reconnects, and every event published
// before and after becomes queryable.
func TestServeExternalNATSRestart(t *testing.T) {
	tmp := t.TempDir()
	addr := freeAddr(t)
	start := func() *eventlog.Embedded {
		srv, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(tmp, "external-nats"), Listen: addr})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	ext := start()
	defer func() { ext.Shutdown() }()
	p := startServe(t, filepath.Join(tmp, "data"), fmt.Sprintf("nats:\n  url: nats://%s\napi:\n  listen: 127.0.0.1:0\n", addr))

	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			b := marshal(t, ev(fmt.Sprintf("x%d", i), event.GrantAdded, at, event.Data{Subject: fmt.Sprintf("user:u%05d", i), Action: "db.table.read", Resource: "db:ext"}))
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := js.Publish(ctx, "whocould.in.changes.ext", b)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	count := func() int {
		_, ans := p.get(t, "/v1/who-could?action=db.table.read&resource=db:ext&at=2026-01-06T00:00:00Z")
		return len(principalsOf(ans))
	}
	waitCount := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for count() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d queryable:\n%s", count(), n, p.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	publish(0, 500)
	waitCount(500)
	ext.Shutdown()
	time.Sleep(300 * time.Millisecond)
	ext = start()
	publish(500, 1000)
	waitCount(1000)
	p.stop(t)
}

// TestDeployConfigs: every configuration in deploy/ loads and passes Validate.
func TestDeployConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/*.yaml")
	if len(files) < 3 {
		t.Fatalf("deploy/ holds %d configurations", len(files))
	}
	for _, f := range files {
		cfg, err := loadServeConfig(f)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestServeTLS: with a certificate configured the API speaks HTTPS only.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile := writeFile(t, dir, "tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile := writeFile(t, dir, "tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	p := startServe(t, filepath.Join(dir, "data"), fmt.Sprintf("nats:\n  listen: 127.0.0.1:0\napi:\n  listen: 127.0.0.1:0\n  tls:\n    cert_file: %s\n    key_file: %s\n", certFile, keyFile))
	if !strings.HasPrefix(p.api, "https://") {
		t.Fatalf("API at %s with a certificate configured", p.api)
	}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(p.api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz over TLS = %d", resp.StatusCode)
	}
	if resp, err := http.Get(strings.Replace(p.api, "https://", "http://", 1) + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}
	p.stop(t)
}

// TestServeNATSNKey: serve reaches an external NATS server that requires an nkey, with the
// seed file of the config; a wrong seed fails at start with the server's reason.
func TestServeNATSNKey(t *testing.T) {
	tmp := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	opts := &natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: filepath.Join(tmp, "js"),
		Nkeys: []*natsserver.NkeyUser{{Nkey: pub}}, NoSigs: true, NoLog: true}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	seedFile := writeFile(t, tmp, "whocould.nk", seed)
	p := startServe(t, filepath.Join(tmp, "data"), fmt.Sprintf("nats:\n  url: %s\n  nkey_file: %s\napi:\n  listen: 127.0.0.1:0\n", srv.ClientURL(), seedFile))
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	res := p.post(t, marshal(t, ev("k1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "db.table.drop", Resource: "db:prod/orders"})))
	_, ans := p.get(t, fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z&min_position=%d", uint64(res["position"].(float64))))
	if got := principalsOf(ans); len(got) != 1 {
		t.Fatalf("who-could through an nkey-protected cluster: %v", got)
	}
	p.stop(t)

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	badFile := writeFile(t, tmp, "other.nk", otherSeed)
	cfg := writeFile(t, tmp, "bad.yaml", []byte(fmt.Sprintf("nats:\n  url: %s\n  nkey_file: %s\napi:\n  listen: 127.0.0.1:0\n", srv.ClientURL(), badFile)))
	r := mustRun(t, 1, tmp, nil, "serve", "--config", cfg, "--data-dir", filepath.Join(tmp, "data2"))
	if !strings.Contains(strings.ToLower(r.stderr), "authorization violation") {
		t.Fatalf("wrong nkey: %s", r)
	}
}

// TestServeTargets: one process ingests, another projects and answers, on the log of a shared
// NATS server; the ingest-only process has no store and no queries, but its health, metrics
// and POST /v1/events.
func TestServeTargets(t *testing.T) {
	tmp := t.TempDir()
	ext, err := eventlog.StartEmbedded(eventlog.EmbeddedConfig{Dir: filepath.Join(tmp, "nats"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Shutdown()
	in := startServe(t, filepath.Join(tmp, "ingest"), fmt.Sprintf("targets: [ingest]\nnats:\n  url: %s\napi:\n  listen: 127.0.0.1:0\n", ext.ClientURL()))
	out := startServe(t, filepath.Join(tmp, "query"), fmt.Sprintf("targets: [projector, api]\nnats:\n  url: %s\napi:\n  listen: 127.0.0.1:0\n", ext.ClientURL()))
	if _, err := os.Stat(filepath.Join(tmp, "ingest", "store")); !os.IsNotExist(err) {
		t.Fatalf("the ingest-only process made a store: %v", err)
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	grant := func(id, who string) []byte {
		return marshal(t, ev(id, event.GrantAdded, at, event.Data{Subject: who, Action: "db.table.drop", Resource: "db:prod/orders"}))
	}
	nc, err := nats.Connect(ext.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(context.Background(), "whocould.in.changes.okta", grant("t1", "user:ann")); err != nil {
		t.Fatal(err)
	}
	in.post(t, grant("t2", "user:bob"))
	who := "/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z"
	waitPrincipals(t, out, who, "user:ann,user:bob")
	if code, _ := in.get(t, who); code != http.StatusNotFound {
		t.Fatalf("who-could on the ingest-only process = %d, want 404", code)
	}
	if code, _ := in.get(t, "/readyz"); code != 200 {
		t.Fatalf("readyz on the ingest-only process = %d", code)
	}
	if v := metricValue(t, in, "whocould_log_position"); v < 2 {
		t.Fatalf("log position on the ingest-only process: %v", v)
	}
	in.stop(t)
	out.stop(t)
}

// TestQueryServer: the query commands answer the same with --server as the API does, in JSON
// and as tables; commands that need the data directory refuse --server.
func TestQueryServer(t *testing.T) {
	p := startServe(t, t.TempDir(), serveTestConfig)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	res := p.post(t, marshal(t, ev("q1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "db.table.drop", Resource: "db:prod/orders"})))
	path := fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T02:14:00Z&min_position=%d", uint64(res["position"].(float64)))
	_, want := p.get(t, path)
	r := mustRun(t, 0, "", nil, "query", "who-could", "--server", p.api, "--token", p.token,
		"--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z", "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("query --server:\n%s\nthe API:\n%v", r.stdout, want)
	}
	r = mustRun(t, 0, "", nil, "query", "explain", "--server", p.api, "--token", p.token,
		"--principal", "user:ann", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	if !strings.Contains(r.stdout, "user:ann (active) could do db.table.drop") {
		t.Fatalf("explain --server table:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"rebuild"}, {"bench"}} {
		r := runIn(t, "", nil, append(args, "--server", p.api)...)
		if r.code != 2 || !strings.Contains(r.stderr, "works on --data-dir only") {
			t.Errorf("%v --server: %s", args, r)
		}
	}
	if r := runIn(t, "", nil, "query", "who-could", "--server", p.api, "--token", "wc_bad", "--action", "a.b", "--resource", "db:x"); r.code != 2 || !strings.Contains(r.stderr, "401") {
		t.Errorf("query with a wrong token: %s", r)
	}
}
