package kafkasource_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/ingest/kafkasource"
)

func TestValidate(t *testing.T) {
	ok := kafkasource.Config{Brokers: []string{"localhost:9092"}}
	for _, tc := range []struct {
		field string
		edit  func(c *kafkasource.Config)
	}{
		{"brokers", func(c *kafkasource.Config) { c.Brokers = nil }},
		{"brokers", func(c *kafkasource.Config) { c.Brokers = []string{"kafka:// x"} }},
		{"topics", func(c *kafkasource.Config) { c.Topics = []string{"who could"} }},
		{"batch", func(c *kafkasource.Config) { c.Batch = 20000 }},
		{"start offset", func(c *kafkasource.Config) { c.StartOffset = "oldest" }},
		{"sasl mechanism", func(c *kafkasource.Config) { c.SASL.Mechanism = "gssapi" }},
		{"sasl mechanism", func(c *kafkasource.Config) { c.SASL.Username = "u" }},
		{"sasl username", func(c *kafkasource.Config) { c.SASL.Mechanism = "plain" }},
		{"tls cert file", func(c *kafkasource.Config) { c.TLS.CertFile = "c.pem" }},
		{"tls ca file", func(c *kafkasource.Config) { c.TLS.CAFile = filepath.Join(t.TempDir(), "none.pem") }},
	} {
		c := ok
		tc.edit(&c)
		_, err := kafkasource.New(c)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: error %v, want one naming %q", c, err, tc.field)
		}
	}
	if _, err := kafkasource.New(ok); err != nil {
		t.Fatal(err)
	}
}

// TestSASLAndTLS reads from a cluster that takes only TLS connections with a client certificate
// and SASL, with each mechanism.
func TestSASLAndTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test ca")
	srv, srvKey := newCert(t, ca, caKey, "127.0.0.1")
	cli, cliKey := newCert(t, ca, caKey, "whocould")
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	certFile := writePEM(t, dir, "client.pem", "CERTIFICATE", cli.Raw)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "p1"),
		kfake.Superuser("SCRAM-SHA-256", "scram256-user", "p2"),
		kfake.Superuser("SCRAM-SHA-512", "scram512-user", "p3"),
		kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey}},
			ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic("secured", 1, nil); err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	mech, err := scram.Mechanism(scram.SHA512, "scram512-user", "p3")
	if err != nil {
		t.Fatal(err)
	}
	tr := &kafka.Transport{SASL: mech, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}}
	pub := publisher(t, tr, c.ListenAddrs(), "secured")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pub(ctx, "k", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, sasl := range []kafkasource.SASL{
		{Mechanism: "plain", Username: "plain-user", Password: "p1"},
		{Mechanism: "scram-sha-256", Username: "scram256-user", Password: "p2"},
		{Mechanism: "scram-sha-512", Username: "scram512-user", Password: "p3"},
	} {
		src, err := kafkasource.New(kafkasource.Config{
			Brokers: c.ListenAddrs(), Topics: []string{"secured"}, GroupID: "g-" + sasl.Mechanism, SASL: sasl,
			TLS: kafkasource.TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile},
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		var got []ingest.Message
		err = src.Run(rctx, func(_ context.Context, batch []ingest.Message) error {
			got = append(got, batch...)
			stop()
			return nil
		})
		if err != nil || rctx.Err() == nil || ctx.Err() != nil {
			t.Fatalf("%s: Run = %v before the message came", sasl.Mechanism, err)
		}
		if len(got) != 1 || string(got[0].Data) != `{"n":1}` || got[0].Source != "kafka:secured" || got[0].Where != "partition 0 offset 0" {
			t.Fatalf("%s: got %+v", sasl.Mechanism, got)
		}
	}
}

// newCert makes a certificate signed by parent (self-signed when nil) for name, an IP address
// or a common name.
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
